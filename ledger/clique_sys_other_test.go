//go:build !linux

package ledger_test

import "syscall"

// gethSysProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// the tests' cleanups stop the geth processes.
func gethSysProcAttr() *syscall.SysProcAttr { return nil }
