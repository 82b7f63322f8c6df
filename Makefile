# bcdad: BCDA bulk-export daemon.  See README.md.
#
#   make            build bin/bcdad
#   make check      unit and integration tests (SANITIZE=1 for ASan+UBSan)
#   make demo       one complete export against the bundled emulator
#   make bench      throughput and memory benchmarks
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       install (as root) or print the Debian packages needed

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR   ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DOCDIR   ?= $(PREFIX)/share/doc/bcdad
DESTDIR  ?=
PYTHON   ?= /usr/bin/python3

PKGS     = libcurl libuv jansson sqlite3 libcrypto zlib libsystemd inih expat \
	   libisal
DEB_PKGS = build-essential pkg-config libcurl4-openssl-dev libuv1-dev \
	   libjansson-dev libsqlite3-dev libssl-dev zlib1g-dev libsystemd-dev \
	   libinih-dev libexpat1-dev libisal-dev python3 python3-botocore awscli sqlite3 curl \
	   python3-prometheus-client \
	   clang libclang-rt-dev \
	   systemd strace \
	   dpkg-dev debhelper lintian rpm

ifeq ($(SANITIZE),1)
BUILD    ?= build/asan
SANFLAGS  = -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -fno-sanitize-recover=all
else
BUILD    ?= build/release
SANFLAGS  =
endif

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wformat=2 -Wformat-security -Wvla \
	   -Wpointer-arith -Wundef -Wwrite-strings -Wimplicit-fallthrough
CFLAGS  ?= -O2 -g
VERSION  = 0.1.0
override CFLAGS += -std=c11 -D_GNU_SOURCE -DBCDAD_VERSION=\"$(VERSION)\" -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
	   -fPIE $(WARN) $(SANFLAGS) -Ilib -I$(BUILD)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
override LDFLAGS += -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(SANFLAGS)
override LDLIBS += $(PKG_LIBS) -lm

# lib/ has one folder per concern (see ARCHITECTURE.md); headers are
# included as "folder/name.h" across folders.
LIB_SRC  = $(wildcard lib/*/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/schema.o
# Two programs: bcdad, the client commands, small so that it starts fast;
# bcdad-daemon, which bcdad becomes for the daemon, -n and doctor.
CLI_OBJ  = $(addprefix $(BUILD)/daemon/,cli.o commands.o client.o)
DMN_SRC  = $(filter-out daemon/cli.c,$(wildcard daemon/*.c))
DMN_OBJ  = $(DMN_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(wildcard tests/unit/*/test_*.c)
UNIT_BIN = $(foreach t,$(UNIT_SRC),$(BUILD)/tests/$(basename $(notdir $(t))))
HDRS     = $(wildcard lib/*/*.h daemon/*.h)
SCHEMA   = $(sort $(wildcard schema/*.sql))

BIN      = $(BUILD)/bcdad
DAEMON   = $(BUILD)/bcdad-daemon

.PHONY: all check unit integration demo bench install clean deps check-deps FORCE \
	fuzz fuzz-lib crashtest dist deb rpm bench-deps

all: check-deps $(BIN) $(DAEMON) bin/bcdad

bin/bcdad: $(BIN)
	@mkdir -p bin
	ln -sf ../$(BIN) $@

# --as-needed (LDFLAGS) keeps only the libraries bcdad's objects call.
$(BIN): $(CLI_OBJ) $(BUILD)/libbcdad.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libbcdad.a $(LDLIBS)

$(DAEMON): $(DMN_OBJ) $(BUILD)/libbcdad.a
	$(CC) $(LDFLAGS) -o $@ $(DMN_OBJ) $(BUILD)/libbcdad.a $(LDLIBS)

# Where bcdad looks for bcdad-daemon when it is not beside it.
$(BUILD)/daemon/cli.o: override CFLAGS += -DBCDAD_LIBEXECDIR=\"$(LIBEXECDIR)\"
$(BUILD)/daemon/cli.o: $(BUILD)/libexecdir
$(BUILD)/libexecdir: FORCE
	@mkdir -p $(BUILD)
	@echo '$(LIBEXECDIR)' | cmp -s - $@ || echo '$(LIBEXECDIR)' > $@

FORCE:

# Made anew each time, so an object of a moved or removed file never stays.
$(BUILD)/libbcdad.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

# Migrations are compiled into the binary: schema/NNN-name.sql becomes one
# entry of an ordered table (see lib/store/store.c).
$(BUILD)/schema.c: $(SCHEMA) tools/embed-schema.sh
	@mkdir -p $(dir $@)
	sh tools/embed-schema.sh $(SCHEMA) > $@.tmp && mv $@.tmp $@

$(BUILD)/schema.o: $(BUILD)/schema.c
	$(CC) $(CFLAGS) -c -o $@ $<

# tests/unit/<folder>/test_<module>.c mirrors lib/<folder>/<module>.c.
vpath test_%.c $(sort $(dir $(UNIT_SRC)))
$(BUILD)/tests/%: %.c $(wildcard tests/unit/*.h) $(HDRS) $(BUILD)/libbcdad.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< \
		$(BUILD)/libbcdad.a $(LDLIBS)

check: deps all $(UNIT_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run.sh
	@if [ "$(SANITIZE)" != 1 ]; then \
	  $(MAKE) --no-print-directory fuzz FUZZ_RUNS=50000; fi

unit: all $(UNIT_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run.sh unit

integration: all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run.sh integration

demo: deps all
	@BUILD=$(BUILD) $(PYTHON) tests/demo.py

bench: bench-deps all $(BUILD)/bench_pipeline $(BUILD)/bench_store
	@BUILD=$(BUILD) $(PYTHON) tests/bench/bench.py

$(BUILD)/bench_%: tests/bench/bench_%.c $(BUILD)/libbcdad.a
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libbcdad.a $(LDLIBS)

# The long crash loop: CRASH_KILLS SIGKILLs at random instants over full
# pipeline exports (tests/integration/test_crashloop.py; make check runs 12).
CRASH_KILLS ?= 200
crashtest: all
	@CRASH_KILLS=$(CRASH_KILLS) BCDAD_BIN=$(CURDIR)/$(BIN) \
	  BCDAD_PYTHON=$(PYTHON) BCDAD_FIXTURES=$(CURDIR)/tests/fixtures \
	  $(PYTHON) tests/integration/run.py test_kill_anywhere

# libFuzzer targets, one per family of outside input (tests/fuzz/), built
# with clang, ASan and UBSan in build/fuzz.  `make fuzz` runs each for
# FUZZ_SECONDS from its seeds, growing a corpus under build/fuzz/corpus,
# and prints the executions; `make check` runs FUZZ_RUNS=50000 inputs of
# each with a fixed seed, the same every time.
FUZZ_DIR  = build/fuzz
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  = $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_SAN  = -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -fno-omit-frame-pointer
FUZZ_SECONDS ?= 60

fuzz-lib:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_DIR) CC=clang \
	  SANFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" $(FUZZ_DIR)/libbcdad.a

# A target may take a daemon/ source with it (the control request).
FUZZ_EXTRA_control = daemon/ctlreq.c

.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $$(FUZZ_EXTRA_$$*) \
    fuzz-lib
	clang -O1 -g -std=c11 -D_GNU_SOURCE -DBCDAD_VERSION=\"$(VERSION)\" \
	  $(WARN) -Ilib -Idaemon $(PKG_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) \
	  -o $@ $< $(FUZZ_EXTRA_$*) $(FUZZ_DIR)/libbcdad.a $(LDLIBS)

fuzz: fuzz-lib $(FUZZ_BIN)
	@for b in $(FUZZ_BIN); do n=$${b##*/fuzz_}; \
	  mkdir -p $(FUZZ_DIR)/corpus/$$n; \
	  $$b $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS) -seed=1,-max_total_time=$(FUZZ_SECONDS)) \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$$n- \
	    $(FUZZ_DIR)/corpus/$$n tests/fuzz/seeds/$$n > $(FUZZ_DIR)/$$n.log 2>&1 \
	    || { tail -40 $(FUZZ_DIR)/$$n.log; echo "fuzz $$n: FAILED"; exit 1; }; \
	  printf 'fuzz %-8s %10s executions, %7s/s, corpus %s\n' $$n \
	    "$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$n.log)" \
	    "$$(sed -n 's/^stat::average_exec_per_sec: *//p' $(FUZZ_DIR)/$$n.log)" \
	    "$$(ls $(FUZZ_DIR)/corpus/$$n | wc -l)"; done

# Fails early with the apt-get line instead of a wall of compiler errors.
check-deps:
	@pkg-config --exists $(PKGS) || { \
	  echo "missing build dependencies; run 'make deps' or:"; \
	  echo "  apt-get install $(DEB_PKGS)"; exit 1; }

# Installs (as root) or names the packages of $(1) that are missing.
install_missing = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "missing packages; run as root:"; \
	  echo "  apt-get install$$missing"; exit 1; \
	fi

deps:
	@$(call install_missing,$(DEB_PKGS))

# make bench's data side and limits: nginx, and ISA-L's igzip.
BENCH_PKGS = nginx-light isal
bench-deps: deps
	@$(call install_missing,$(BENCH_PKGS))

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)/bcdad \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR)
	install -d $(DESTDIR)$(LIBEXECDIR)/bcdad
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/bcdad
	install -m 0755 $(DAEMON) $(DESTDIR)$(LIBEXECDIR)/bcdad/bcdad-daemon
	install -m 0644 daemon/bcdad.8 $(DESTDIR)$(MANDIR)/man8/bcdad.8
	install -m 0644 lib/config/bcdad.conf.5 $(DESTDIR)$(MANDIR)/man5/bcdad.conf.5
	install -m 0644 packaging/bcdad.conf.example \
		$(DESTDIR)$(SYSCONFDIR)/bcdad/bcdad.conf.example
	install -m 0644 systemd/bcdad.sysusers $(DESTDIR)$(SYSUSERSDIR)/bcdad.conf
	install -m 0644 systemd/bcdad.tmpfiles $(DESTDIR)$(TMPFILESDIR)/bcdad.conf
	install -m 0644 README.md packaging/iam-policy.json $(DESTDIR)$(DOCDIR)
	for u in systemd/*.service systemd/*.socket systemd/*.timer; do \
		sed 's|/usr/bin/bcdad|$(BINDIR)/bcdad|g' $$u > $(DESTDIR)$(UNITDIR)/$${u#systemd/} && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#systemd/} || exit 1; done

# The release tarball: the tracked files (every file, without git), with
# fixed owners, order and times.  Packages build from it alone: make deb
# (packaging/debian as its debian/) and make rpm (packaging/rpm/bcdad.spec);
# DEB_BUILD_OPTIONS=nocheck and RPM_OPTS=--without=check skip make check.
DIST = build/bcdad-$(VERSION).tar.gz

dist:
	@mkdir -p build
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git ls-files; else find . \( -path ./build -o -path ./bin -o \
	  -name __pycache__ -o -name '*.part' \) -prune -o -type f -print | \
	  sed 's|^\./||'; fi | LC_ALL=C sort > build/dist.list
	tar --create --gzip --file $(DIST) --files-from build/dist.list \
	  --transform 's|^|bcdad-$(VERSION)/|' --owner=0 --group=0 \
	  --numeric-owner --mtime=2026-01-01 --mode=u+w,go-w
	@echo $(DIST)

deb: dist
	rm -rf build/deb && mkdir -p build/deb
	tar -xzf $(DIST) -C build/deb
	cp -r build/deb/bcdad-$(VERSION)/packaging/debian \
	  build/deb/bcdad-$(VERSION)/debian
	cd build/deb/bcdad-$(VERSION) && dpkg-buildpackage -b -us -uc
	@ls build/deb/*.deb

rpm: dist
	rm -rf build/rpm && mkdir -p build/rpm/SOURCES
	cp $(DIST) build/rpm/SOURCES/
	rpmbuild -bb --define "_topdir $(CURDIR)/build/rpm" $(RPM_OPTS) \
	  packaging/rpm/bcdad.spec
	@ls build/rpm/RPMS/*/*.rpm

clean:
	rm -rf build bin
