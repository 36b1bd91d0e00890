//go:build !linux

package chaos

import "syscall"

// childAttr: only Linux has a parent-death signal; elsewhere Run's cleanup
// alone stops the children.
func childAttr() *syscall.SysProcAttr { return nil }
