# CUDA: REACTOR_ENGINE_CUDA (AUTO|ON|OFF) decides; sets REACTOR_CUDA, REACTOR_CUDA_REASON, REACTOR_CUDA_ARCHS
# and, when ON, the static library reactor_cuda (csrc/kernels) with the CUDA runtime linked in statically.
set(REACTOR_ENGINE_CUDA "AUTO" CACHE STRING "Build the CUDA kernels: AUTO (when nvcc works), ON (required) or OFF")
set_property(CACHE REACTOR_ENGINE_CUDA PROPERTY STRINGS AUTO ON OFF)
# 80 runs on every Ampere/Ada GPU, 90 on Hopper; each also embeds PTX, which newer GPUs compile at load.
set(REACTOR_ENGINE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures of the kernels (CMAKE_CUDA_ARCHITECTURES form)")

string(TOUPPER "${REACTOR_ENGINE_CUDA}" _reactor_cuda_mode)
if(NOT _reactor_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "REACTOR_ENGINE_CUDA is '${REACTOR_ENGINE_CUDA}'; it takes AUTO, ON or OFF")
endif()

set(REACTOR_CUDA OFF)
set(REACTOR_CUDA_ARCHS "")

if(_reactor_cuda_mode STREQUAL "OFF")
  set(REACTOR_CUDA_REASON "REACTOR_ENGINE_CUDA=OFF")
else()
  # check_language honours CMAKE_CUDA_COMPILER and $CUDACXX, then looks on PATH. Toolkits are often
  # installed without being put on PATH, so point it at the usual places when nothing else says.
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(REACTOR_NVCC nvcc PATHS ENV CUDA_HOME ENV CUDA_PATH /usr/local/cuda PATH_SUFFIXES bin)
    if(REACTOR_NVCC)
      set(ENV{CUDACXX} "${REACTOR_NVCC}")
    endif()
  endif()
  # nvcc compiles host code with the same compiler as the rest of the module (one C++ ABI).
  if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
    set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Explicit, so the build does not depend on the GPU (if any) of the machine that builds it.
    set(CMAKE_CUDA_ARCHITECTURES "${REACTOR_ENGINE_CUDA_ARCHITECTURES}")
    enable_language(CUDA)
    find_package(CUDAToolkit)
  endif()

  if(NOT CMAKE_CUDA_COMPILER)
    set(REACTOR_CUDA_REASON "no working nvcc found (PATH, CUDACXX, CUDA_HOME, CUDA_PATH, /usr/local/cuda)")
  elseif(NOT TARGET CUDA::cudart_static)
    set(REACTOR_CUDA_REASON "nvcc ${CMAKE_CUDA_COMPILER_VERSION} found but not the static CUDA runtime (libcudart_static.a)")
  else()
    set(REACTOR_CUDA ON)
    set(REACTOR_CUDA_REASON "nvcc ${CMAKE_CUDA_COMPILER_VERSION} found at ${CMAKE_CUDA_COMPILER}")
    # Commas, not semicolons: the value becomes a C string through target_compile_definitions.
    string(REPLACE ";" "," REACTOR_CUDA_ARCHS "${CMAKE_CUDA_ARCHITECTURES}")
  endif()

  if(_reactor_cuda_mode STREQUAL "ON" AND NOT REACTOR_CUDA)
    message(FATAL_ERROR "REACTOR_ENGINE_CUDA=ON but ${REACTOR_CUDA_REASON}. Install the CUDA toolkit, "
                        "point CUDACXX at its nvcc, or build with REACTOR_ENGINE_CUDA=AUTO or OFF.")
  endif()
endif()

add_feature_info(CUDA REACTOR_CUDA "${REACTOR_CUDA_REASON}")

if(REACTOR_CUDA)
  get_filename_component(_reactor_csrc "${CMAKE_CURRENT_LIST_DIR}/../csrc" ABSOLUTE)
  set(_reactor_kernels "${_reactor_csrc}/kernels")
  add_library(reactor_cuda STATIC
    "${_reactor_kernels}/CudaRuntime.cpp"
    "${_reactor_kernels}/Rgb24Converter.cpp"
    "${_reactor_kernels}/Rgb24Kernel.cu"
  )
  target_include_directories(reactor_cuda PUBLIC "${_reactor_csrc}")
  # Static runtime: the module needs no libcudart.so and loads libcuda.so.1 only when first used,
  # so it imports on machines with no GPU or driver (every CUDA path then reports "unavailable").
  target_link_libraries(reactor_cuda PUBLIC CUDA::cudart_static)
  set_target_properties(reactor_cuda PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    CUDA_RUNTIME_LIBRARY Static
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_EXTENSIONS OFF)
  target_compile_definitions(reactor_cuda PRIVATE REACTOR_CUDA_ARCHS="${REACTOR_CUDA_ARCHS}")
  target_compile_options(reactor_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror=return-type>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror=return-type>)
  # Note: hide the symbols of the static archives (the CUDA runtime above all) in whatever links
  # this library. Otherwise the module's cudaMalloc & co. could bind at load time to another
  # libcudart.so already loaded with RTLD_GLOBAL (torch does so), a different runtime version.
  target_link_options(reactor_cuda INTERFACE "LINKER:--exclude-libs,ALL")
endif()
