# Milter adapter against real filters (tests/milter/test_milter.py): a
# scripted libmilter filter (python3-milter), OpenDKIM sign + verify in one
# chain, faulty filters, rspamd. milter_drive is the host they talk to.
# A group whose filter software is missing exits 77 (skipped).
if(SMTPD_HAVE_MILTER)
  add_executable(milter_drive ${CMAKE_CURRENT_LIST_DIR}/milter/milter_drive.c)
  target_compile_options(milter_drive PRIVATE ${SMTPD_WARNINGS} -Wpedantic)
  target_link_libraries(milter_drive PRIVATE smtpd_milter_static)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    foreach(g scripted noreply opendkim faults rspamd)
      add_test(NAME milter_${g}
        COMMAND ${Python3_EXECUTABLE}
                ${CMAKE_CURRENT_LIST_DIR}/milter/test_milter.py
                --drive $<TARGET_FILE:milter_drive> ${g})
      set_tests_properties(milter_${g} PROPERTIES
        TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS milter)
    endforeach()
  endif()
endif()

# smtpd-maildir --milter against real filters (tests/interop/test_milter.py:
# the python3-milter scripted filter edits and refuses, OpenDKIM signs,
# filters that are down or silent); both poller builds. Exits 77
# (skipped) without python3-milter.
if(SMTPD_HAVE_MILTER AND TARGET smtpd-maildir)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    foreach(_srv smtpd-maildir smtpd-maildir-poll)
      if(TARGET ${_srv})
        string(REPLACE "smtpd-maildir" "interop_milter" _name ${_srv})
        string(REPLACE "-" "_" _name ${_name})
        add_test(NAME ${_name}
          COMMAND ${Python3_EXECUTABLE}
                  ${CMAKE_CURRENT_LIST_DIR}/interop/test_milter.py
                  --server $<TARGET_FILE:${_srv}>)
        set_tests_properties(${_name} PROPERTIES
          TIMEOUT 240 SKIP_RETURN_CODE 77 LABELS "interop;milter"
          ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1")
      endif()
    endforeach()
  endif()
endif()

# The libFuzzer harness (tests/fuzz/fuzz_milter.c): built and run for 30 s
# from the seeds in tests/fuzz/corpus-milter when the compiler is clang
# with libFuzzer (CC=clang, as the clang CI build uses).
if(SMTPD_HAVE_MILTER AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS -fsanitize=fuzzer)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=fuzzer)
  check_c_source_compiles(
    "#include <stdint.h>
     #include <stddef.h>
     int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
     { (void)d; (void)n; return 0; }" SMTPD_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(SMTPD_HAVE_LIBFUZZER)
    file(GLOB _milter_sources ${PROJECT_SOURCE_DIR}/lib/milter/*.c)
    add_executable(fuzz_milter ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_milter.c
                   ${SMTPD_CORE_SOURCES} ${_milter_sources})
    target_include_directories(fuzz_milter PRIVATE
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/lib)
    target_compile_options(fuzz_milter PRIVATE ${SMTPD_WARNINGS}
      -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_milter PRIVATE -fsanitize=fuzzer,address,undefined)
    add_test(NAME milter_fuzz
      COMMAND sh -c "d=$(mktemp -d) && $<TARGET_FILE:fuzz_milter> -max_total_time=30 -max_len=4096 \"$d\" ${CMAKE_CURRENT_LIST_DIR}/fuzz/corpus-milter; r=$?; rm -rf \"$d\"; exit $r")
    set_tests_properties(milter_fuzz PROPERTIES TIMEOUT 120 LABELS "milter;fuzz")
  endif()
endif()
