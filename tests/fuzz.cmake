# Fuzzing (docs/fuzzing.md). Every tests/fuzz/fuzz_<name>.c harness gives
#
#  - fuzz_replay_<name> (always, with this build's compiler and flags: gcc,
#    clang, the ASan/UBSan build): the harness with tests/fuzz/replay_main.c
#    linked against the static libraries, and the ctest test of the same
#    name, which runs every input of tests/fuzz/corpus/<name>/ and
#    tests/fuzz/regressions/<name>/ through the harness and its oracles;
#  - fuzz_<name> (with -DSMTPD_FUZZ=ON, clang only): the libFuzzer binary,
#    with the harness and the library sources it needs compiled with
#    -fsanitize=fuzzer-no-link,address,undefined (target `fuzz` builds
#    them all; scripts/fuzz.sh runs them).
#
# With -DSMTPD_FUZZ_COVERAGE=ON (clang) the replay binaries are built from
# the library sources with -fprofile-instr-generate -fcoverage-mapping
# instead, for the per-file line coverage of the corpora
# (scripts/fuzz.sh coverage).
#
# A harness's name says what it needs: *tls* the GnuTLS adapter, *cyrus*
# the Cyrus SASL adapter, *transcript* the transcript library, *milter*
# the Milter adapter; it is skipped when that is not built. The Milter
# harness's libFuzzer binary and its seeds (tests/fuzz/corpus-milter) are
# the Milter adapter's own (tests/milter.cmake); only its replay is here.
option(SMTPD_FUZZ "Build the libFuzzer harnesses (clang)" OFF)
option(SMTPD_FUZZ_COVERAGE
       "Build the fuzz replay programs with clang source-based coverage" OFF)

set(SMTPD_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR}/fuzz)
file(GLOB SMTPD_FUZZ_HARNESSES CONFIGURE_DEPENDS ${SMTPD_FUZZ_DIR}/fuzz_*.c)

if((SMTPD_FUZZ OR SMTPD_FUZZ_COVERAGE) AND
   NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "SMTPD_FUZZ / SMTPD_FUZZ_COVERAGE need clang "
                      "(CC=clang cmake ...)")
endif()

set(SMTPD_FUZZ_FLAGS -g -O1 -fno-omit-frame-pointer
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all)
set(SMTPD_FUZZ_COV_FLAGS -g -O1 -fprofile-instr-generate -fcoverage-mapping)

# One object library per part and flavour ("fz" fuzzing, "cov" coverage):
# the library sources compiled once with the flavour's flags.
function(smtpd_fuzz_part part flavour)
  set(t smtpd_${flavour}_${part})
  if(TARGET ${t})
    return()
  endif()
  if(part STREQUAL "core")
    set(srcs ${SMTPD_CORE_SOURCES})
  elseif(part STREQUAL "gnutls")
    set(srcs ${PROJECT_SOURCE_DIR}/lib/tls/gnutls.c)
  elseif(part STREQUAL "cyrus")
    set(srcs ${PROJECT_SOURCE_DIR}/lib/sasl/cyrus.c)
  elseif(part STREQUAL "transcript")
    set(srcs ${SMTPD_TRANSCRIPT_SOURCES})
  elseif(part STREQUAL "milter")
    set(srcs ${PROJECT_SOURCE_DIR}/lib/milter/milter.c
             ${PROJECT_SOURCE_DIR}/lib/milter/header.c)
  endif()
  add_library(${t} OBJECT ${srcs})
  target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR}/include
                             ${PROJECT_SOURCE_DIR}/lib)
  target_compile_options(${t} PRIVATE ${SMTPD_WARNINGS})
  if(flavour STREQUAL "fz")
    target_compile_options(${t} PRIVATE ${SMTPD_FUZZ_FLAGS})
  else()
    target_compile_options(${t} PRIVATE ${SMTPD_FUZZ_COV_FLAGS})
  endif()
  if(part STREQUAL "gnutls")
    target_link_libraries(${t} PRIVATE PkgConfig::GNUTLS)
  elseif(part STREQUAL "cyrus")
    target_link_libraries(${t} PRIVATE PkgConfig::SASL2)
  endif()
endfunction()

# the link of a target made from the object libraries of parts
function(smtpd_fuzz_link target flavour)
  foreach(part ${ARGN})
    smtpd_fuzz_part(${part} ${flavour})
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:smtpd_${flavour}_${part}>)
    if(part STREQUAL "gnutls")
      target_link_libraries(${target} PRIVATE PkgConfig::GNUTLS)
    elseif(part STREQUAL "cyrus")
      target_link_libraries(${target} PRIVATE PkgConfig::SASL2)
    endif()
  endforeach()
endfunction()

if(SMTPD_FUZZ)
  add_custom_target(fuzz)
endif()
add_custom_target(fuzz_replay) # every replay program

foreach(src ${SMTPD_FUZZ_HARNESSES})
  get_filename_component(h ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" n ${h})
  set(parts core)
  set(libs smtpd_static)
  if(n MATCHES "tls")
    if(NOT SMTPD_HAVE_GNUTLS)
      continue()
    endif()
    list(APPEND parts gnutls)
    list(APPEND libs smtpd_gnutls_static)
  endif()
  if(n MATCHES "cyrus")
    if(NOT SMTPD_HAVE_CYRUS)
      continue()
    endif()
    list(APPEND parts cyrus)
    list(APPEND libs smtpd_sasl_cyrus_static)
  endif()
  if(n MATCHES "transcript")
    if(NOT TARGET smtpd_transcript_static)
      continue()
    endif()
    list(APPEND parts transcript)
    list(APPEND libs smtpd_transcript_static)
  endif()
  if(n MATCHES "milter")
    if(NOT SMTPD_HAVE_MILTER OR NOT TARGET smtpd_milter_static)
      continue()
    endif()
    list(APPEND parts milter)
    list(APPEND libs smtpd_milter_static)
  endif()

  # the replay program and its ctest test
  add_executable(fuzz_replay_${n} ${src} ${SMTPD_FUZZ_DIR}/replay_main.c)
  target_include_directories(fuzz_replay_${n} PRIVATE
    ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/lib ${SMTPD_FUZZ_DIR})
  target_compile_options(fuzz_replay_${n} PRIVATE ${SMTPD_WARNINGS})
  if(SMTPD_FUZZ_COVERAGE)
    target_compile_options(fuzz_replay_${n} PRIVATE ${SMTPD_FUZZ_COV_FLAGS})
    target_link_options(fuzz_replay_${n} PRIVATE -fprofile-instr-generate)
    smtpd_fuzz_link(fuzz_replay_${n} cov ${parts})
  else()
    target_link_libraries(fuzz_replay_${n} PRIVATE ${libs})
  endif()
  set(dirs)
  if(n STREQUAL "milter")
    list(APPEND dirs ${SMTPD_FUZZ_DIR}/corpus-milter)
  endif()
  list(APPEND dirs ${SMTPD_FUZZ_DIR}/corpus/${n}
       ${SMTPD_FUZZ_DIR}/regressions/${n})
  add_dependencies(fuzz_replay fuzz_replay_${n})
  add_test(NAME fuzz_replay_${n} COMMAND fuzz_replay_${n} ${dirs})
  # lsan.supp: leaks inside third-party code only (docs/fuzzing.md)
  set_tests_properties(fuzz_replay_${n} PROPERTIES TIMEOUT 900 LABELS fuzz
    ENVIRONMENT "LSAN_OPTIONS=suppressions=${SMTPD_FUZZ_DIR}/lsan.supp:print_suppressions=0")

  # the libFuzzer binary
  if(SMTPD_FUZZ AND NOT n STREQUAL "milter")
    add_executable(fuzz_${n} ${src})
    target_include_directories(fuzz_${n} PRIVATE
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/lib ${SMTPD_FUZZ_DIR})
    target_compile_options(fuzz_${n} PRIVATE ${SMTPD_WARNINGS}
                           ${SMTPD_FUZZ_FLAGS})
    # The harness file itself without comparison tracing: its comparisons
    # are mostly oracle checks on what the engine returned; the few on
    # input (control octets 0x01-0x06, the reference framer's BDAT and
    # line ends) mirror comparisons the library makes, which are still
    # traced. The conversation harness ran about 1.2 times faster per
    # execution without them (docs/fuzzing.md, "Speed"); in the session
    # harness half of the time went to tracing the host's own checks
    # (hostile_host.h's hh_run and hh_after, perf on 2026-12-02).
    if(n MATCHES "^(conversation|tls|session)$")
      target_compile_options(fuzz_${n} PRIVATE
                             -fno-sanitize-coverage=trace-cmp)
    endif()
    target_link_options(fuzz_${n} PRIVATE
      -fsanitize=fuzzer,address,undefined)
    smtpd_fuzz_link(fuzz_${n} fz ${parts})
    add_dependencies(fuzz fuzz_${n})
  endif()
endforeach()
