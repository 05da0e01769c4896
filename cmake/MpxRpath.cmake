# Installed programs find the installed libmpx without LD_LIBRARY_PATH: their RUNPATH is the
# library directory relative to where the program is installed ($ORIGIN/../lib for bin/), so a
# prefix works wherever it is installed or moved (`cmake --install build/default --prefix /p`).
# The build tree keeps CMake's absolute build RPATH, so tests run the programs in place.
#
# Included after the library's targets and before the programs': every executable created after
# this gets CMAKE_INSTALL_RPATH for an install into ${CMAKE_INSTALL_BINDIR}. A program installed
# elsewhere calls mpx_install_rpath(target DESTINATION) for the RUNPATH of that directory. A
# CMAKE_INSTALL_RPATH given on the command line is kept as given.

# mpx_install_rpath_for(dir out): the RUNPATH from a program installed in `dir` (relative to
# the prefix, or absolute) to the installed libmpx.
function(mpx_install_rpath_for dir out)
  set(root "/mpx-prefix")
  foreach(v dir lib)
    if(v STREQUAL "dir")
      set(d "${dir}")
    else()
      set(d "${CMAKE_INSTALL_LIBDIR}")
    endif()
    if(NOT IS_ABSOLUTE "${d}")
      set(d "${root}/${d}")
    endif()
    set(${v}_abs "${d}")
  endforeach()
  file(RELATIVE_PATH rel "${dir_abs}" "${lib_abs}")
  if(rel STREQUAL "")
    set(${out} "$ORIGIN" PARENT_SCOPE)
  else()
    set(${out} "$ORIGIN/${rel}" PARENT_SCOPE)
  endif()
endfunction()

# mpx_install_rpath(target dir): the installed `target` (installed into `dir`) finds libmpx.
function(mpx_install_rpath target dir)
  mpx_install_rpath_for("${dir}" rp)
  set_target_properties(${target} PROPERTIES INSTALL_RPATH "${rp}")
endfunction()

if(NOT DEFINED CACHE{CMAKE_INSTALL_RPATH})
  mpx_install_rpath_for("${CMAKE_INSTALL_BINDIR}" MPX_BIN_RPATH)
  set(CMAKE_INSTALL_RPATH "${MPX_BIN_RPATH}")
endif()
