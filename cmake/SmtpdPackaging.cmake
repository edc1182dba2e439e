# SmtpdPackaging.cmake - install rules, the CMake package `smtpd` and the
# pkg-config files for every library libsmtpd builds. Included once from
# the top-level CMakeLists.txt after the last library is defined.
#
# Generic: it packages each library registered by smtpd_library() (global
# property SMTPD_LIBRARIES) plus anything listed in SMTPD_INSTALL_TARGETS.
# For a library NAME with OUTPUT name OUT that is:
#   - NAME (shared) and NAME_static installed and exported as smtpd::NAME,
#     smtpd::NAME_static; an adapter smtpd_X is also smtpd::X and
#     smtpd::X_static (the names the docs use), in the build tree
#     (add_subdirectory users) and in the installed package;
#   - libOUT.pc from cmake/libOUT.pc.in when that template exists, else a
#     generated one (Requires: the smtpd libraries it links; Requires.private:
#     the pkg-config modules it links);
#   - the find_dependency() calls the installed targets need, derived from
#     what they link (PkgConfig::P -> pkg_check_modules(P ... P_MODULE_NAME),
#     Threads::Threads -> find_dependency(Threads));
#   - a line in ${PROJECT_BINARY_DIR}/smtpd-libraries.txt (shared library
#     file of each), read by the ABI check and scripts/abi-update.sh.

get_property(_smtpd_libs GLOBAL PROPERTY SMTPD_LIBRARIES)
foreach(_lib ${_smtpd_libs})
  list(APPEND SMTPD_INSTALL_TARGETS ${_lib} ${_lib}_static)
endforeach()
list(REMOVE_DUPLICATES SMTPD_INSTALL_TARGETS)
set(SMTPD_LIBRARY_TARGETS "")     # shared ones
foreach(_t ${SMTPD_INSTALL_TARGETS})
  get_target_property(_type ${_t} TYPE)
  if(_type STREQUAL "SHARED_LIBRARY")
    list(APPEND SMTPD_LIBRARY_TARGETS ${_t})
  endif()
endforeach()

# ---- names: smtpd::NAME, and smtpd::X for an adapter smtpd_X ---------------
foreach(_t ${SMTPD_INSTALL_TARGETS})
  if(NOT TARGET smtpd::${_t})
    add_library(smtpd::${_t} ALIAS ${_t})
  endif()
  if(_t MATCHES "^smtpd_(.+)$" AND NOT _t STREQUAL "smtpd_static")
    set(_short ${CMAKE_MATCH_1})
    if(NOT TARGET smtpd::${_short})
      add_library(smtpd::${_short} ALIAS ${_t})
    endif()
  endif()
endforeach()

# ---- what each installed target links ------------------------------------
# _smtpd_pc_modules_<target>: pkg-config modules; _smtpd_smtpd_deps_<target>:
# smtpd libraries (by output name).
set(_smtpd_pc_prefixes "")
set(SMTPD_CONFIG_PKGCONFIG_DEPS "")   # "PREFIX|module|target,target"
set(SMTPD_CONFIG_PACKAGE_DEPS "")     # find_dependency() names
foreach(_t ${SMTPD_INSTALL_TARGETS})
  set(_smtpd_pc_modules_${_t} "")
  set(_smtpd_smtpd_deps_${_t} "")
  get_target_property(_l1 ${_t} LINK_LIBRARIES)
  get_target_property(_l2 ${_t} INTERFACE_LINK_LIBRARIES)
  set(_links "")
  foreach(_l ${_l1} ${_l2})
    if(_l)
      list(APPEND _links ${_l})
    endif()
  endforeach()
  # what a consumer of the installed target links too
  set(_iface "")
  foreach(_l ${_l2})
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" _l "${_l}")
    list(APPEND _iface ${_l})
  endforeach()
  list(REMOVE_DUPLICATES _links)
  foreach(_l ${_links})
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" _l "${_l}")
    list(FIND _iface "${_l}" _in_iface)
    if(_l MATCHES "^PkgConfig::(.+)$")
      set(_prefix ${CMAKE_MATCH_1})
      set(_module "${${_prefix}_MODULE_NAME}")
      if(NOT _module)
        string(TOLOWER ${_prefix} _module)
        message(WARNING "smtpd packaging: no module name recorded for "
                "PkgConfig::${_prefix} (linked by ${_t}); assuming ${_module}")
      endif()
      list(APPEND _smtpd_pc_modules_${_t} ${_module})
      if(_in_iface GREATER -1)
        set(_smtpd_pc_users_${_prefix} ${_smtpd_pc_users_${_prefix}} ${_t})
        set(_smtpd_pc_module_${_prefix} ${_module})
        list(APPEND _smtpd_pc_prefixes ${_prefix})
      endif()
    elseif(_l STREQUAL "Threads::Threads" AND _in_iface GREATER -1)
      list(APPEND SMTPD_CONFIG_PACKAGE_DEPS Threads)
    elseif(TARGET ${_l} AND NOT _l MATCHES "::")
      list(FIND SMTPD_INSTALL_TARGETS ${_l} _idx)
      if(_idx GREATER -1)
        get_target_property(_out ${_l} OUTPUT_NAME)
        list(APPEND _smtpd_smtpd_deps_${_t} lib${_out})
      endif()
    endif()
  endforeach()
endforeach()
if(_smtpd_pc_prefixes)
  list(REMOVE_DUPLICATES _smtpd_pc_prefixes)
endif()
foreach(_prefix ${_smtpd_pc_prefixes})
  list(REMOVE_DUPLICATES _smtpd_pc_users_${_prefix})
  string(REPLACE ";" "," _users "${_smtpd_pc_users_${_prefix}}")
  list(APPEND SMTPD_CONFIG_PKGCONFIG_DEPS
       "${_prefix}|${_smtpd_pc_module_${_prefix}}|${_users}")
endforeach()
if(SMTPD_CONFIG_PACKAGE_DEPS)
  list(REMOVE_DUPLICATES SMTPD_CONFIG_PACKAGE_DEPS)
endif()

# ---- install: libraries and the CMake package ------------------------------
set(SMTPD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/smtpd)
install(TARGETS ${SMTPD_INSTALL_TARGETS} EXPORT smtpdTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT smtpdTargets NAMESPACE smtpd::
        DESTINATION ${SMTPD_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/smtpdConfig.cmake.in
  ${PROJECT_BINARY_DIR}/smtpdConfig.cmake
  INSTALL_DESTINATION ${SMTPD_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/smtpdConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/smtpdConfig.cmake
              ${PROJECT_BINARY_DIR}/smtpdConfigVersion.cmake
        DESTINATION ${SMTPD_CMAKE_DIR})

# ---- pkg-config: relocatable ------------------------------------------------
# prefix is found from where the .pc file lies (${pcfiledir}), so that
# `cmake --install build --prefix P` works for a P chosen after configure
# and the installed tree may be moved. An absolute CMAKE_INSTALL_LIBDIR
# (given by hand) cannot be relocated; the configure-time prefix is kept.
set(SMTPD_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${SMTPD_PC_DIR}")
  set(SMTPD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _rel "/smtpd-prefix/${SMTPD_PC_DIR}" "/smtpd-prefix")
  string(REGEX REPLACE "/$" "" _rel "${_rel}")     # "../.."
  set(SMTPD_PC_PREFIX "\${pcfiledir}/${_rel}")
endif()
foreach(_d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_d}}")
    set(SMTPD_PC_${_d} "${CMAKE_INSTALL_${_d}}")
  else()
    set(SMTPD_PC_${_d} "\${prefix}/${CMAKE_INSTALL_${_d}}")
  endif()
endforeach()

set(_smtpd_pc_files "")
foreach(_t ${SMTPD_LIBRARY_TARGETS})
  get_target_property(_out ${_t} OUTPUT_NAME)
  set(_pc lib${_out}.pc)
  list(APPEND _smtpd_pc_files ${_pc})
  set(_tpl ${PROJECT_SOURCE_DIR}/cmake/${_pc}.in)
  if(EXISTS ${_tpl})
    file(READ ${_tpl} _text)
  else()
    # generated: Requires the smtpd libraries it links, Requires.private
    # the pkg-config modules the static library needs
    set(_req "${_smtpd_smtpd_deps_${_t}}")
    set(_reqp "${_smtpd_pc_modules_${_t}}")
    string(REPLACE ";" ", " _req "${_req}")
    string(REPLACE ";" ", " _reqp "${_reqp}")
    string(CONCAT _text "prefix=@SMTPD_PC_PREFIX@\nlibdir=@SMTPD_PC_LIBDIR@\n"
           "includedir=@SMTPD_PC_INCLUDEDIR@\n\nName: lib${_out}\n"
           "Description: lib${_out}, part of libsmtpd\n"
           "Version: @PROJECT_VERSION@\n")
    if(_req)
      string(APPEND _text "Requires: ${_req}\n")
    endif()
    if(_reqp)
      string(APPEND _text "Requires.private: ${_reqp}\n")
    endif()
    string(APPEND _text "Libs: -L\${libdir} -l${_out}\nCflags: -I\${includedir}\n")
  endif()
  # a template written in the old, configure-time style is made relocatable
  string(REGEX REPLACE "(^|\n)prefix=@CMAKE_INSTALL_PREFIX@"
         "\\1prefix=@SMTPD_PC_PREFIX@" _text "${_text}")
  string(CONFIGURE "${_text}" _text @ONLY)
  file(WRITE ${PROJECT_BINARY_DIR}/pkgconfig/${_pc}.tmp "${_text}")
  configure_file(${PROJECT_BINARY_DIR}/pkgconfig/${_pc}.tmp
                 ${PROJECT_BINARY_DIR}/pkgconfig/${_pc} COPYONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${_pc} DESTINATION ${SMTPD_PC_DIR})
endforeach()
# .pc files listed by hand for something not made with smtpd_library()
foreach(_pc ${SMTPD_PC_FILES})
  list(FIND _smtpd_pc_files ${_pc} _idx)
  if(_idx EQUAL -1 AND EXISTS ${PROJECT_SOURCE_DIR}/cmake/${_pc}.in)
    configure_file(${PROJECT_SOURCE_DIR}/cmake/${_pc}.in
                   ${PROJECT_BINARY_DIR}/pkgconfig/${_pc} @ONLY)
    install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${_pc} DESTINATION ${SMTPD_PC_DIR})
  endif()
endforeach()

# ---- the list of shared libraries, for the ABI check ------------------------
set(_manifest "")
foreach(_t ${SMTPD_LIBRARY_TARGETS})
  string(APPEND _manifest "$<TARGET_FILE:${_t}>\n")
endforeach()
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/smtpd-libraries.txt
     CONTENT "${_manifest}")
