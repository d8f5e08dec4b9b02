//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with the kernel's /dev/ptmx interface (no dependency).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no /dev/ptmx: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestHelperForegroundChild is the child of TestCtrlCReachesOnlyJitbot (it does nothing in a normal run): it
// behaves like jitbot under `make run`, taking the terminal's foreground and waiting for Ctrl-C.
func TestHelperForegroundChild(t *testing.T) {
	if os.Getenv("JITBOT_TEST_FOREGROUND_CHILD") == "" {
		return
	}
	restore := func() {}
	if os.Getenv("JITBOT_FOREGROUND") == "1" {
		restore = takeTerminalForeground()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	fmt.Println("child ready")
	<-ctx.Done()
	stop()
	restore()
	fmt.Println("child stopped cleanly")
	os.Exit(0)
}

// TestCtrlCReachesOnlyJitbot: under a real terminal, a parent shell stands in for make (it dies of SIGINT
// like make does). Ctrl-C typed on the terminal must stop the child cleanly and leave the parent alive to
// report exit code 0; without JITBOT_FOREGROUND the parent dies with the child, which is the bug.
func TestCtrlCReachesOnlyJitbot(t *testing.T) {
	for _, fg := range []bool{true, false} {
		t.Run(fmt.Sprintf("foreground=%v", fg), func(t *testing.T) {
			master, slave := openPTY(t)
			env := append(os.Environ(), "JITBOT_TEST_FOREGROUND_CHILD=1")
			if fg {
				env = append(env, "JITBOT_FOREGROUND=1")
			}
			// The parent runs the child in the foreground, as make runs a recipe, and reports its code.
			script := fmt.Sprintf("%q -test.run='^TestHelperForegroundChild$' -test.count=1; echo \"parent saw exit $?\"", os.Args[0])
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = env
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var out bytes.Buffer
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				buf := make([]byte, 4096)
				for {
					n, err := master.Read(buf)
					mu.Lock()
					out.Write(buf[:n])
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			text := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(text(), "child ready") {
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("child did not start:\n%s", text())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := io.WriteString(master, "\x03"); err != nil { // Ctrl-C on the terminal
				t.Fatal(err)
			}
			err := cmd.Wait()
			// With every slave descriptor closed the master reads what is left, then EIO.
			slave.Close()
			<-drained
			if fg {
				if err != nil || !strings.Contains(text(), "child stopped cleanly") || !strings.Contains(text(), "parent saw exit 0") {
					t.Fatalf("parent: %v\n%s", err, text())
				}
			} else if err == nil || strings.Contains(text(), "parent saw exit") {
				t.Fatalf("without JITBOT_FOREGROUND the parent should have died of SIGINT like make does: %v\n%s", err, text())
			}
		})
	}
}
