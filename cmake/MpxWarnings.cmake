# Warning and sanitizer settings, applied to mpx's own targets through mpx_target_settings().
set(MPX_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter)
if(MPX_WERROR)
  list(APPEND MPX_WARNINGS -Werror)
endif()

set(MPX_SANITIZE_FLAGS "")
if(MPX_SANITIZE)
  set(MPX_SANITIZE_FLAGS -fsanitize=${MPX_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_compile_options(${MPX_SANITIZE_FLAGS})
  add_link_options(${MPX_SANITIZE_FLAGS})
endif()

function(mpx_target_settings target)
  target_compile_options(${target} PRIVATE ${MPX_WARNINGS})
  target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
endfunction()
