# mk/packaging.mk: install layout, systemd/sysusers/tmpfiles/logrotate files, man
# pages, the tarball (`make dist`), and the check that the docs list every config key.
#
# Layout (all under the configure directories, so `make install` honours --prefix,
# --sysconfdir, --localstatedir and DESTDIR):
#   $(sbindir)/voxbridge, $(bindir)/voxbridge-callsim     (the *_PROGRAMS)
#   $(sysconfdir)/voxbridge/voxbridge.conf                (never overwritten)
#   $(sysconfdir)/logrotate.d/voxbridge
#   $(pkgdatadir)/sql/*.sql       (mk/store.mk: dist_sql_DATA; what `voxbridge migrate` applies)
#   $(pkgdatadir)/...             (other data: pkgdata_DATA += ... in its fragment)
#   $(localstatedir)/lib/voxbridge, $(localstatedir)/log/voxbridge (empty; the service's)
#   $(systemdsystemunitdir)/voxbridge.service, $(sysusersdir)/voxbridge.conf,
#   $(tmpfilesdir)/voxbridge.conf, $(mandir)/man8/voxbridge.8, man5/voxbridge.conf.5,
#   man1/voxbridge-callsim.1, $(docdir)/README.md, operations.md, configuration.md, callsim.md
# Other fragments install data with automake variables (pkgdata_DATA,
# nobase_dist_pkgdata_DATA, ...), never with install-data-local, which lives here.

vbconfdir = $(sysconfdir)/voxbridge
vbstatedir = $(localstatedir)/lib/voxbridge
vblogdir = $(localstatedir)/log/voxbridge
logrotatedir = $(sysconfdir)/logrotate.d

dist_man_MANS = man/voxbridge.8 man/voxbridge.conf.5 man/voxbridge-callsim.1
dist_doc_DATA = README.md docs/operations.md docs/configuration.md docs/callsim.md

# Files whose paths follow the configure directories: made from a .in by sed.
PKG_SUBST = sed -e 's|@sbindir[@]|$(sbindir)|g' -e 's|@bindir[@]|$(bindir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g' -e 's|@localstatedir[@]|$(localstatedir)|g' \
	-e 's|@pkgdatadir[@]|$(pkgdatadir)|g' -e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g'
PKG_GENERATED = packaging/systemd/voxbridge.service packaging/systemd/voxbridge.sysusers \
	packaging/systemd/voxbridge.tmpfiles packaging/logrotate/voxbridge \
	packaging/voxbridge.conf.installed
PKG_TEMPLATES = packaging/systemd/voxbridge.service.in packaging/systemd/voxbridge.sysusers.in \
	packaging/systemd/voxbridge.tmpfiles.in packaging/logrotate/voxbridge.in
noinst_DATA = $(PKG_GENERATED)
CLEANFILES += $(PKG_GENERATED)

packaging/systemd/voxbridge.service: $(srcdir)/packaging/systemd/voxbridge.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) packaging/systemd && \
	  $(PKG_SUBST) $(srcdir)/packaging/systemd/voxbridge.service.in > $@.tmp && mv $@.tmp $@
packaging/systemd/voxbridge.sysusers: $(srcdir)/packaging/systemd/voxbridge.sysusers.in Makefile
	$(AM_V_GEN)$(MKDIR_P) packaging/systemd && \
	  $(PKG_SUBST) $(srcdir)/packaging/systemd/voxbridge.sysusers.in > $@.tmp && mv $@.tmp $@
packaging/systemd/voxbridge.tmpfiles: $(srcdir)/packaging/systemd/voxbridge.tmpfiles.in Makefile
	$(AM_V_GEN)$(MKDIR_P) packaging/systemd && \
	  $(PKG_SUBST) $(srcdir)/packaging/systemd/voxbridge.tmpfiles.in > $@.tmp && mv $@.tmp $@
packaging/logrotate/voxbridge: $(srcdir)/packaging/logrotate/voxbridge.in Makefile
	$(AM_V_GEN)$(MKDIR_P) packaging/logrotate && \
	  $(PKG_SUBST) $(srcdir)/packaging/logrotate/voxbridge.in > $@.tmp && mv $@.tmp $@
# The shipped config with its paths moved to the configured directories.
packaging/voxbridge.conf.installed: $(srcdir)/conf/voxbridge.conf Makefile
	$(AM_V_GEN)$(MKDIR_P) packaging && sed -e 's|/etc/voxbridge/|$(sysconfdir)/voxbridge/|g' \
	  -e 's|/var/lib/voxbridge|$(localstatedir)/lib/voxbridge|g' \
	  -e 's|/var/log/voxbridge/|$(localstatedir)/log/voxbridge/|g' \
	  $(srcdir)/conf/voxbridge.conf > $@.tmp && mv $@.tmp $@

if VB_SYSTEMD_UNIT
systemdsystemunit_DATA = packaging/systemd/voxbridge.service
endif

# sysusers.d and tmpfiles.d files are named voxbridge.conf where they go.
install-data-local: $(PKG_GENERATED)
	$(MKDIR_P) '$(DESTDIR)$(vbconfdir)' '$(DESTDIR)$(logrotatedir)' \
	  '$(DESTDIR)$(vbstatedir)' '$(DESTDIR)$(vblogdir)'
	@if test -f '$(DESTDIR)$(vbconfdir)/voxbridge.conf'; then \
	  echo "keeping $(DESTDIR)$(vbconfdir)/voxbridge.conf (not overwritten)"; \
	else \
	  echo " $(INSTALL_DATA) -m 640 voxbridge.conf '$(DESTDIR)$(vbconfdir)/voxbridge.conf'"; \
	  $(INSTALL_DATA) -m 640 packaging/voxbridge.conf.installed \
	    '$(DESTDIR)$(vbconfdir)/voxbridge.conf' || exit 1; \
	fi
	$(INSTALL_DATA) packaging/logrotate/voxbridge '$(DESTDIR)$(logrotatedir)/voxbridge'
if VB_SYSUSERS
	$(MKDIR_P) '$(DESTDIR)$(sysusersdir)'
	$(INSTALL_DATA) packaging/systemd/voxbridge.sysusers '$(DESTDIR)$(sysusersdir)/voxbridge.conf'
endif
if VB_TMPFILES
	$(MKDIR_P) '$(DESTDIR)$(tmpfilesdir)'
	$(INSTALL_DATA) packaging/systemd/voxbridge.tmpfiles '$(DESTDIR)$(tmpfilesdir)/voxbridge.conf'
endif

# The config is removed only when it is still the shipped one: an edited config
# stays. Empty state directories go; ones holding data stay.
uninstall-local:
	@if test -f '$(DESTDIR)$(vbconfdir)/voxbridge.conf' && \
	    cmp -s packaging/voxbridge.conf.installed '$(DESTDIR)$(vbconfdir)/voxbridge.conf'; then \
	  echo " rm -f '$(DESTDIR)$(vbconfdir)/voxbridge.conf'"; \
	  rm -f '$(DESTDIR)$(vbconfdir)/voxbridge.conf'; \
	elif test -f '$(DESTDIR)$(vbconfdir)/voxbridge.conf'; then \
	  echo "keeping the edited $(DESTDIR)$(vbconfdir)/voxbridge.conf"; \
	fi
	rm -f '$(DESTDIR)$(logrotatedir)/voxbridge'
if VB_SYSUSERS
	rm -f '$(DESTDIR)$(sysusersdir)/voxbridge.conf'
endif
if VB_TMPFILES
	rm -f '$(DESTDIR)$(tmpfilesdir)/voxbridge.conf'
endif
	-rmdir '$(DESTDIR)$(vbconfdir)' '$(DESTDIR)$(vbstatedir)' '$(DESTDIR)$(vblogdir)' 2>/dev/null

# Directories listed in VB_DIST_DIRS (Makefile.am) are copied from the source tree
# only, so a VPATH build dir's objects never reach the tarball, and a directory that
# is still empty (git keeps none) is skipped rather than breaking `make dist`.
dist-hook:
	@for d in $(VB_DIST_DIRS); do \
	  test -d '$(srcdir)'/"$$d" || continue; \
	  (cd '$(srcdir)' && tar -cf - --exclude=__pycache__ --exclude='*.pyc' \
	    --exclude='*.o' --exclude=.deps --exclude=.dirstamp "$$d") | \
	    (cd '$(distdir)' && tar -xf -) || exit 1; \
	done

EXTRA_DIST += $(PKG_TEMPLATES) packaging/gen-conf-docs.py \
	packaging/deb packaging/rpm/voxbridge.spec packaging/README.md \
	tests/packaging/check-conf-docs.sh tests/packaging/check-versions.sh tests/packaging/check-unit.sh \
	tests/packaging/check-install.sh \
	tests/packaging/run.sh tests/packaging/pkgtest.py

# The man pages and docs/configuration.md must name every key and option, the deb/rpm
# versions must match configure's, the unit must pass systemd-analyze verify, and
# `make install DESTDIR=...` must lay out (and uninstall) what this file says.
TESTS += tests/packaging/check-conf-docs.sh tests/packaging/check-versions.sh \
	tests/packaging/check-unit.sh tests/packaging/check-install.sh

# Rewrites man/voxbridge.conf.5 and docs/configuration.md from `voxbridge --config-keys`
# (run it after adding a key, then commit both).
update-conf-docs: voxbridge$(EXEEXT)
	./voxbridge$(EXEEXT) --config-keys | python3 $(srcdir)/packaging/gen-conf-docs.py \
	  --man $(srcdir)/man/voxbridge.conf.5 --md $(srcdir)/docs/configuration.md \
	  --version $(PACKAGE_VERSION)

# The package test (root only): builds the .deb and the .rpm from `make dist`,
# installs, runs, reloads, stops and purges. See tests/packaging/run.sh.
packaging-test: all
	$(srcdir)/tests/packaging/run.sh $(abs_builddir)

# `make deb` / `make rpm`: the packages from this tree's tarball into ./packages.
deb: dist-gzip
	$(srcdir)/tests/packaging/run.sh --build-only=deb $(abs_builddir)
rpm: dist-gzip
	$(srcdir)/tests/packaging/run.sh --build-only=rpm $(abs_builddir)

.PHONY: update-conf-docs packaging-test deb rpm
