# Finds mpx's named dependencies. Where one is missing, stop with the Debian package to install.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install -y pkg-config")
endif()
find_package(Threads REQUIRED)

pkg_check_modules(HWLOC IMPORTED_TARGET hwloc>=2.0)
if(NOT HWLOC_FOUND)
  message(FATAL_ERROR "hwloc (>= 2.0) not found: apt-get install -y libhwloc-dev hwloc")
endif()

pkg_check_modules(PROTOBUFC IMPORTED_TARGET libprotobuf-c>=1.3)
if(NOT PROTOBUFC_FOUND)
  message(FATAL_ERROR "protobuf-c not found: apt-get install -y libprotobuf-c-dev")
endif()
find_program(PROTOC_C_EXECUTABLE NAMES protoc-c protoc-gen-c)
if(NOT PROTOC_C_EXECUTABLE)
  message(FATAL_ERROR "protoc-c not found: apt-get install -y protobuf-c-compiler")
endif()

# MPI only for the MPI backend (MPX_WITH_MPI, default ON); without it MPI is not searched for.
if(MPX_WITH_MPI)
  find_package(MPI COMPONENTS C)
  if(NOT MPI_C_FOUND)
    message(FATAL_ERROR "MPI (Open MPI) not found: apt-get install -y libopenmpi-dev openmpi-bin "
                        "(or configure with -DMPX_WITH_MPI=OFF)")
  endif()
  find_program(MPX_MPIEXEC NAMES mpirun mpiexec HINTS ${MPI_HOME} PATH_SUFFIXES bin)
endif()
