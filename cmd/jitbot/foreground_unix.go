//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"
)

// takeTerminalForeground puts jitbot in its own process group and makes that the terminal's foreground
// group, so that Ctrl-C reaches jitbot alone. `make run` sets JITBOT_FOREGROUND=1: otherwise make, which is in
// the same group, gets the SIGINT too and dies of it ("make: *** Interrupt", exit 2) however cleanly jitbot
// shut down. Without a controlling terminal (CI, a service manager) it does nothing. The returned function
// gives the terminal back to the group that had it.
func takeTerminalForeground() (restore func()) {
	nothing := func() {}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nothing
	}
	fd := tty.Fd()
	orig, err := tcgetpgrp(fd)
	if err != nil || orig != syscall.Getpgrp() {
		// Not in the foreground (started in the background with &): leave the terminal alone.
		tty.Close()
		return nothing
	}
	if err := syscall.Setpgid(0, 0); err != nil {
		tty.Close()
		return nothing
	}
	// A background group that changes the foreground group gets SIGTTOU, which would stop it.
	signal.Ignore(syscall.SIGTTOU)
	if err := tcsetpgrp(fd, syscall.Getpgrp()); err != nil {
		_ = syscall.Setpgid(0, orig)
		signal.Reset(syscall.SIGTTOU)
		tty.Close()
		return nothing
	}
	return func() {
		_ = tcsetpgrp(fd, orig)
		tty.Close()
	}
}

func tcgetpgrp(fd uintptr) (int, error) {
	var pgid int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCGPGRP), uintptr(unsafe.Pointer(&pgid))); e != 0 {
		return 0, e
	}
	return int(pgid), nil
}

func tcsetpgrp(fd uintptr, pgid int) error {
	p := int32(pgid)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCSPGRP), uintptr(unsafe.Pointer(&p))); e != 0 {
		return e
	}
	return nil
}
