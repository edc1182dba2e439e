# Builds libsmtpd afresh, installs it with `cmake --install --prefix` to a
# prefix chosen after configuring, moves it, and builds and runs consumers
# of every installed library (pkg-config and CMake, shared and static);
# see tests/install/check_install.sh.
add_test(NAME install_consumer
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install/check_install.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(install_consumer PROPERTIES TIMEOUT 300 LABELS install)
