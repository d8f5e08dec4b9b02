package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel send the command SIGTERM if jitbot exec dies (kill -9): the
// command must not keep working after the grant's heartbeats stop.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
