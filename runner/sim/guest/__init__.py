"""The CI guest: a standard Debian 12 machine under QEMU that runs the simulated cluster inside."""
