# Board: generic x86_64 PC (legacy BIOS and UEFI), also the QEMU test machine.
# Everything board-specific lives in this folder: this file, the kernel
# config fragment (kernel.config), the disk layout and boot loader (image.sh).

# Target CPU architecture: musl, BusyBox and our C code are built for it.
ARCH := x86_64
# GNU triple of the compiler that builds musl for this arch (host gcc here).
CROSS_TRIPLE := x86_64-linux-gnu
# Where the host keeps the kernel headers for this arch.
KERNEL_HEADERS := /usr/include
# Kernel build: ARCH= value and the image it produces.
KERNEL_ARCH := x86_64
KERNEL_IMAGE := arch/x86/boot/bzImage
KERNEL_CMDLINE := console=tty0 console=ttyS0,115200 panic=10

# QEMU for `make run` and the e2e tests.
QEMU := qemu-system-x86_64
QEMU_MACHINE := -M pc -m 512 -smp 2
QEMU_NIC := virtio-net-pci
QEMU_DISK := -drive file=$$DISK,format=qcow2,if=virtio
# Firmwares the e2e tests boot the image with.
QEMU_FIRMWARES := bios uefi
QEMU_UEFI_CODE := /usr/share/OVMF/OVMF_CODE.fd
QEMU_UEFI_VARS := /usr/share/OVMF/OVMF_VARS.fd
