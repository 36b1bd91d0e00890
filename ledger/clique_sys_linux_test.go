package ledger_test

import "syscall"

// gethSysProcAttr makes the kernel kill a geth child when the test process
// dies without running its cleanups (a panic, a test timeout, kill -9).
func gethSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
