# ABI check: the exported symbols of every shared library against
# abi/<library>.symbols, and abidiff against abi/<library>-X.Y.abi (the
# stored ABI of the last release) when abigail-tools is installed.
# tests/abi/check_abi.sh says what passes; scripts/abi-update.sh regenerates.
add_test(NAME abi
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/abi/check_abi.sh
                 ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR} ${PROJECT_VERSION})
set_tests_properties(abi PROPERTIES TIMEOUT 300 LABELS abi)
