package ledger_test

import "syscall"

// gethSysProcAttr makes the kernel kill a geth child when the test process
// dies without running its cleanups (a panic, a test timeout, kill -9). The
// signal is tied to the OS thread that started geth, which Go keeps alive
// (it ends threads only under goroutines that lock one and exit).
func gethSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
