# fq_test(NAME SOURCES... [LABELS l...] [TIMEOUT s]): a Criterion test executable linked against
# the static testing library (which exposes internals), registered with CTest.
function(fq_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LABELS;DEFINES" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE fabriq_testing fq_testsupport PkgConfig::CRITERION)
  if(T_DEFINES)
    target_compile_definitions(${name} PRIVATE ${T_DEFINES})
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  # Criterion runs each test in its own process; -j1 keeps a file's tests from competing for
  # the two cores, CTest runs files in parallel.
  add_test(NAME ${name} COMMAND ${name} -j1 --timeout ${T_TIMEOUT})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()
