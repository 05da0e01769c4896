# mpx_protoc_c(OUT_SOURCES OUT_HEADERS proto...): generate C from .proto files at build time with
# protoc-c. Generated files go to ${CMAKE_CURRENT_BINARY_DIR}/proto, which callers add to their
# include path.
function(mpx_protoc_c out_srcs out_hdrs)
  set(srcs "")
  set(hdrs "")
  set(outdir "${CMAKE_CURRENT_BINARY_DIR}/proto")
  file(MAKE_DIRECTORY "${outdir}")
  foreach(proto IN LISTS ARGN)
    get_filename_component(abs "${proto}" ABSOLUTE)
    get_filename_component(dir "${abs}" DIRECTORY)
    get_filename_component(name "${abs}" NAME_WE)
    set(c "${outdir}/${name}.pb-c.c")
    set(h "${outdir}/${name}.pb-c.h")
    add_custom_command(
      OUTPUT "${c}" "${h}"
      COMMAND "${PROTOC_C_EXECUTABLE}" "--c_out=${outdir}" "-I${dir}" "${abs}"
      DEPENDS "${abs}"
      COMMENT "protoc-c ${name}.proto"
      VERBATIM)
    list(APPEND srcs "${c}")
    list(APPEND hdrs "${h}")
  endforeach()
  set(${out_srcs} "${srcs}" PARENT_SCOPE)
  set(${out_hdrs} "${hdrs}" PARENT_SCOPE)
endfunction()
