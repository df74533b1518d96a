# Install rules and the Debian package (cpack -G DEB).
#
# `cmake --install build` (prefix /usr/local by default; `--prefix /usr` for a system
# install) puts:
#   bin/somrated                              the daemon and its commands
#   lib/systemd/system/somrated.{service,socket}  units, ExecStart= pointing at bin/ above
#   share/man/man8/somrated.8                 the manual
#   share/somrated/sql/                       the migrations (also built into the binary)
#   share/somrated/grafana/                   Grafana provisioning files and dashboards
#   share/doc/somrated/README.md, examples/somrated.toml
#   /etc/somrated/somrated.toml               the config; only when none is there yet
# The binary goes to bin, not sbin: besides the daemon it has commands for anyone
# (scrape --once, export, check-config), as Debian's prometheus and alertmanager do.
# The config directory is /etc/somrated whatever the prefix, because the unit's
# ConfigurationDirectory=somrated always means /etc/somrated.
include(GNUInstallDirs)

set(SOMRATED_CONFIG_DIR "/etc/somrated" CACHE PATH
    "Where the config is installed (the unit's ConfigurationDirectory)")
set(SOMRATED_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "systemd system unit directory, relative to the install prefix")
set(SOMRATED_DEB_MAINTAINER "somrated maintainers <somrated@localhost>" CACHE STRING
    "Maintainer field of the Debian package")

install(TARGETS somrated RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

# The shipped unit names /usr/bin/somrated (the package's path); an install with another
# prefix gets a copy whose ExecStart= names the binary it installed. The prefix is only
# known at install time (cpack installs with its own), hence install(CODE).
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/systemd/somrated.service\" unit)
  set(shipped \"ExecStart=/usr/bin/somrated \")
  string(FIND \"\${unit}\" \"\${shipped}\" at)
  if(at EQUAL -1)
    message(FATAL_ERROR \"systemd/somrated.service has no line starting \${shipped}\")
  endif()
  string(REPLACE \"\${shipped}\"
         \"ExecStart=\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/somrated \" unit \"\${unit}\")
  # One copy per destination, so that concurrent installs (cpack, tests) do not race.
  string(MD5 where \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
  set(staged \"${PROJECT_BINARY_DIR}/systemd/\${where}/somrated.service\")
  file(WRITE \"\${staged}\" \"\${unit}\")
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${SOMRATED_SYSTEMD_UNIT_DIR}\" TYPE FILE
       FILES \"\${staged}\" \"${PROJECT_SOURCE_DIR}/systemd/somrated.socket\")
")

install(FILES docs/somrated.8 DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
install(FILES README.md DESTINATION "${CMAKE_INSTALL_DOCDIR}")
install(FILES packaging/somrated.toml DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples")
install(DIRECTORY sql/ DESTINATION "${CMAKE_INSTALL_DATADIR}/somrated/sql"
        FILES_MATCHING PATTERN "*.sql")
install(DIRECTORY contrib/grafana/ DESTINATION "${CMAKE_INSTALL_DATADIR}/somrated/grafana")

# A config that is already there is the administrator's: `cmake --install` leaves it
# alone (the package's conffile handling does the same for upgrades).
install(CODE "
  if(EXISTS \"\$ENV{DESTDIR}${SOMRATED_CONFIG_DIR}/somrated.toml\")
    message(STATUS \"Keeping: \$ENV{DESTDIR}${SOMRATED_CONFIG_DIR}/somrated.toml\")
  else()
    file(INSTALL DESTINATION \"${SOMRATED_CONFIG_DIR}\" TYPE FILE
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES \"${PROJECT_SOURCE_DIR}/packaging/somrated.toml\")
  endif()
")

# The Debian package. Depends comes from dpkg-shlibdeps (dpkg-dev) on the binary.
configure_file(packaging/deb/conffiles.in "${PROJECT_BINARY_DIR}/packaging/deb/conffiles" @ONLY)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME somrated)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${SOMRATED_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Kyrgyz som exchange-rate tracker daemon")
# The package installs under /usr whatever CMAKE_INSTALL_PREFIX the build has, into the
# staging root through DESTDIR, so that /etc/somrated lands in the package too.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Every source is fetched over HTTPS and checked against the system's trust store.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS ca-certificates)
# CPack indents these lines and turns the empty one into " ."; the summary is the synopsis.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "somrated scrapes the USD, EUR and RUB rates that 24.kg shows and the National
Bank's (NBKR) official daily rates, keeps every change in one SQLite file and
serves current rates and history over HTTP (JSON, CSV, a Frankfurter-compatible
API, Grafana and Prometheus endpoints and a page for browsers). Alert rules
notify webhooks, Alertmanager, Slack, Telegram, ntfy or a program.

The package ships a hardened systemd service and an optional socket unit;
neither is enabled or started on installation.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_BINARY_DIR}/packaging/deb/conffiles" "${PROJECT_SOURCE_DIR}/packaging/deb/postinst"
    "${PROJECT_SOURCE_DIR}/packaging/deb/prerm" "${PROJECT_SOURCE_DIR}/packaging/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
