package chaos

import "syscall"

// childAttr makes the kernel SIGKILL a child when the harness's thread dies,
// so no child outlives a crashed test.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
