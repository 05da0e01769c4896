# Installs libmpx (shared and static), its headers, a CMake package (find_package(mpx)) and mpx.pc.
include(CMakePackageConfigHelpers)
install(TARGETS mpx mpx_static EXPORT mpxTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# the public headers, less those of parts left out, and the generated <mpx/features.h>
set(MPX_HEADER_EXCLUDES PATTERN "*.in" EXCLUDE)
if(NOT MPX_WITH_MPI)
  list(APPEND MPX_HEADER_EXCLUDES PATTERN "mpi.h" EXCLUDE)
endif()
if(NOT MPX_WITH_IPC)
  list(APPEND MPX_HEADER_EXCLUDES PATTERN "ipc_*.h" EXCLUDE)
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/core/include/mpx DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        ${MPX_HEADER_EXCLUDES})
install(FILES ${MPX_GENERATED_INCLUDE}/mpx/features.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mpx)
install(EXPORT mpxTargets NAMESPACE mpx:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mpx)
# What the installed package requires: MPI only when the MPI backend is built in. mpx.pc's
# Requires are the packages whose headers mpx's headers include (protobuf-c: mpx/proto.h; ompi-c:
# mpx/mpi.h). hwloc is private: no public header names it, and a static libmpx.a needs only -lhwloc
# (Libs.private, with the -L pkg-config gave us when hwloc is outside the system's directories).
# Listed as a Requires, `pkg-config --static` would also add hwloc's own private libraries, which
# only a static libhwloc.a needs (-ludev: no libudev.a, and no libudev.so without libudev-dev).
set(MPX_PC_REQUIRES "libprotobuf-c")
string(JOIN " " MPX_PC_HWLOC_LIBS ${HWLOC_LDFLAGS})
set(MPX_FIND_MPI "")
if(MPX_WITH_MPI)
  string(APPEND MPX_PC_REQUIRES " ompi-c")
  set(MPX_FIND_MPI "find_dependency(MPI COMPONENTS C)")
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mpxConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mpxConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mpx)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mpxConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mpxConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/mpxConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mpx)
# mpx.pc finds its prefix relative to where it is installed, so the tree can be moved
file(RELATIVE_PATH MPX_PC_UP "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
configure_file(${PROJECT_SOURCE_DIR}/cmake/mpx.pc.in ${CMAKE_CURRENT_BINARY_DIR}/mpx.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mpx.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
