# Postern: top-level Makefile. See README.md and docs/ARCHITECTURE.md.
#
#   make                 firmware image for BOARD (default x86_64)
#   make run             build if needed, boot the image under QEMU
#   make test            everything CI runs: unit + integration + e2e
#   make host            our C code for this machine (gcc, ASan+UBSan)
#   make bench | fuzz | soak | clean | distclean
#
# Third-party code is fetched from Debian at pinned versions and built in
# $(POSTERN_CACHE) (default ~/.cache/postern), outside the checkout.

BOARD ?= x86_64
BOARD_DIR := board/$(BOARD)
ifeq ($(wildcard $(BOARD_DIR)/board.mk),)
$(error BOARD=$(BOARD): there is no $(BOARD_DIR)/board.mk)
endif
include $(BOARD_DIR)/board.mk

export POSTERN_CACHE ?= $(HOME)/.cache/postern
export BOARD ARCH CROSS_TRIPLE KERNEL_HEADERS KERNEL_ARCH KERNEL_IMAGE KERNEL_CMDLINE
export QEMU QEMU_MACHINE QEMU_NIC QEMU_DISK QEMU_FIRMWARES QEMU_UEFI_CODE QEMU_UEFI_VARS
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
export VERSION
# Reproducible builds: every timestamp in the image is the last commit's.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 1700000000)

PY := /usr/bin/python3
B := build/$(BOARD)
TP := $(B)/third-party
HB ?= build/host
IMG := $(B)/postern-$(VERSION)-$(BOARD).img

.PHONY: all setup setup-build sources thirdparty kernel rootfs image run test \
        test-unit test-integration test-e2e host target bench fuzz fuzz-million soak clean distclean \
        netfilter-check
.DELETE_ON_ERROR:
.SECONDARY:
# Quiet by default; `make V=1` shows every command.
ifeq ($(V),1)
Q :=
else
Q := @
endif

all: image

# ---- set-up: host packages, deb-src, pinned sources (all idempotent) --------
setup-build:
	@scripts/setup-host.sh build
setup:
	@scripts/setup-host.sh all
sources: setup-build
	@scripts/fetch-sources.sh

# ---- third-party for the target: musl sysroot, BearSSL, BusyBox, ... -------
# Built once per version and configuration in the cache; $(TP)/<name> links there.
thirdparty: sources
	@scripts/build-thirdparty.sh $(ARCH) $(TP)

# The kernel's timestamp is the last commit that changed its inputs, so a
# commit elsewhere does not relink it (still reproducible).
KERNEL_EPOCH := $(or $(shell git log -1 --format=%ct -- $(BOARD_DIR)/kernel.config \
                  scripts/build-kernel.sh scripts/pins 2>/dev/null),$(SOURCE_DATE_EPOCH))
kernel: sources
	@SOURCE_DATE_EPOCH=$(KERNEL_EPOCH) scripts/build-kernel.sh $(BOARD_DIR) $(B)/kernel

# ---- our C code -------------------------------------------------------------
WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wvla -D_DEFAULT_SOURCE -D_GNU_SOURCE
LIB_SRC := $(sort $(wildcard src/lib/*.c))
# Every object depends on every header of ours: simple, and never stale.
HDRS := $(wildcard src/*/*.h)
PROGS := $(notdir $(patsubst %/,%,$(sort $(filter-out src/lib/,$(dir $(wildcard src/*/*.c))))))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
# Test tools built for the host only, never laid into the image.
HOST_ONLY_PROGS := tls-probe
TARGET_PROGS := $(filter-out $(HOST_ONLY_PROGS),$(PROGS))

# Target build: static, musl, size-optimised.
TCC = $(TP)/musl/bin/musl-gcc
TCFLAGS = $(WARN) -Os -ffunction-sections -fdata-sections -Isrc/lib -I$(TP)/bearssl/inc \
          -DPOSTERN_VERSION='"$(VERSION)"'
TLDFLAGS = -static -Wl,--gc-sections -s -L$(TP)/bearssl/lib
TOBJ := $(B)/obj
$(TOBJ)/%.o: src/%.c $(HDRS) | thirdparty
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(TCC) $(TCFLAGS) -c -o $@ $<
$(TOBJ)/libpostern.a: $(patsubst src/%.c,$(TOBJ)/%.o,$(LIB_SRC))
	@rm -f $@; $(if $^,ar rcD $@ $^,ar rcD $@)
define target_prog
$(B)/bin/$(1): $(patsubst src/%.c,$(TOBJ)/%.o,$(wildcard src/$(1)/*.c)) $(TOBJ)/libpostern.a
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$$(Q)$$(TCC) -o $$@ $$^ $$(TLDFLAGS) -lbearssl
endef
$(foreach p,$(TARGET_PROGS),$(eval $(call target_prog,$(p))))
target: $(addprefix $(B)/bin/,$(TARGET_PROGS))

# Host build: gcc with ASan+UBSan, for unit and integration tests.
HCC := gcc
HCFLAGS := $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=all -Isrc/lib -I$(HB)/third-party/bearssl/inc \
           -DPOSTERN_VERSION='"$(VERSION)"'
HLDFLAGS := -fsanitize=address,undefined -L$(HB)/third-party/bearssl/lib
$(HB)/obj/%.o: src/%.c $(HDRS) | host-thirdparty
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(HCC) $(HCFLAGS) -c -o $@ $<
$(HB)/obj/tests/%.o: tests/unit/%.c $(HDRS) $(wildcard tests/unit/*.h) | host-thirdparty
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(HCC) $(HCFLAGS) -Itests/unit -c -o $@ $<
$(HB)/libpostern.a: $(patsubst src/%.c,$(HB)/obj/%.o,$(LIB_SRC))
	@rm -f $@; $(if $^,ar rcD $@ $^,ar rcD $@)
define host_prog
$(HB)/bin/$(1): $(patsubst src/%.c,$(HB)/obj/%.o,$(wildcard src/$(1)/*.c)) $(HB)/libpostern.a
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$$(Q)$$(HCC) -o $$@ $$^ $$(HLDFLAGS) -lbearssl
endef
$(foreach p,$(PROGS),$(eval $(call host_prog,$(p))))
$(HB)/tests/%: $(HB)/obj/tests/%.o $(HB)/libpostern.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(HCC) -o $@ $^ $(HLDFLAGS) -lbearssl
.PHONY: host-thirdparty
host-thirdparty: sources
	@scripts/build-thirdparty.sh host $(HB)/third-party
host: $(addprefix $(HB)/bin/,$(PROGS)) $(patsubst tests/unit/%.c,$(HB)/tests/%,$(UNIT_SRC))

# ---- web: the admin page's CGI (web/*.c -> admin.cgi) and assets -----------
# (issue 10, docs/web.md) webd runs BUILD/web/admin.cgi; mk-rootfs.sh lays it
# into /usr/libexec/postern/web/ and web/www/* into /usr/share/postern/www/.
WEB_SRC := $(sort $(wildcard web/*.c))
WEB_HDRS := $(wildcard web/*.h)
$(HB)/webobj/%.o: web/%.c $(HDRS) $(WEB_HDRS) | host-thirdparty
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(HCC) $(HCFLAGS) -Iweb -c -o $@ $<
$(HB)/web/admin.cgi: $(patsubst web/%.c,$(HB)/webobj/%.o,$(WEB_SRC)) $(HB)/libpostern.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(HCC) -o $@ $^ $(HLDFLAGS) -lbearssl
$(TOBJ)/web/%.o: web/%.c $(HDRS) $(WEB_HDRS) | thirdparty
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(TCC) $(TCFLAGS) -Iweb -c -o $@ $<
$(B)/web/admin.cgi: $(patsubst web/%.c,$(TOBJ)/web/%.o,$(WEB_SRC)) $(TOBJ)/libpostern.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(TCC) -o $@ $^ $(TLDFLAGS) -lbearssl
host: $(HB)/web/admin.cgi
target: $(B)/web/admin.cgi
# ---- end of the web block ----------------------------------------------------

# ---- root filesystem and image ----------------------------------------------
rootfs: thirdparty target
	@scripts/mk-rootfs.sh $(B)

# The kernel carries every netfilter option the generated rules use (issue 9).
# The check compiles the rule generator for the build machine (no target
# binary runs, so any BOARD works); it reruns only when its inputs change.
netfilter-check: $(B)/netfilter-check.ok
$(B)/netfilter-check.ok: $(BOARD_DIR)/kernel.config scripts/check-netfilter.py $(LIB_SRC) $(HDRS)
	@mkdir -p $(B)/netfilter-check
	@BUILD_CC="$(HCC)" $(PY) scripts/check-netfilter.py --work $(B)/netfilter-check \
		$(BOARD_DIR)/kernel.config
	@touch $@

image: kernel rootfs netfilter-check
	@$(BOARD_DIR)/image.sh $(IMG) $(B)/kernel $(B)/rootfs.cpio.gz
	@ln -sf $(notdir $(IMG)) $(B)/postern-$(BOARD).img

# make run PROVISION=file  hands the box a configuration on first boot.
run: image
	@scripts/run-qemu.sh $(IMG)

# ---- tests ------------------------------------------------------------------
PYTEST := $(PY) -m pytest -p no:cacheprovider -q -rfEs
test: setup
	@$(MAKE) --no-print-directory all host
	$(PYTEST) tests/unit tests/integration tests/e2e

test-unit: setup
	@$(MAKE) --no-print-directory host
	$(PYTEST) tests/unit
test-integration: setup
	@$(MAKE) --no-print-directory host
	$(PYTEST) tests/integration
test-e2e: setup
	@$(MAKE) --no-print-directory all
	$(PYTEST) tests/e2e

bench: setup
	@$(MAKE) --no-print-directory all host
	$(PY) tests/bench/run.py

FUZZ_SECONDS ?= 30
fuzz: setup
	@scripts/run-fuzz.sh $(FUZZ_SECONDS)

# The acceptance run (docs/FUZZING.md): every target for a million
# executions. FUZZ_OUT=build/fuzz-<you> keeps it apart from others' runs;
# FUZZ_TARGETS="pem users" runs only those.
FUZZ_RUNS ?= 1000000
fuzz-million: setup
	@FUZZ_RUNS=$(FUZZ_RUNS) scripts/run-fuzz.sh

soak: setup
	@$(MAKE) --no-print-directory all host
	POSTERN_SOAK=1 $(PYTEST) tests/e2e tests/integration

clean:
	rm -rf build

# Also drops the download and build cache shared by every checkout.
distclean: clean
	rm -rf "$(POSTERN_CACHE)"
