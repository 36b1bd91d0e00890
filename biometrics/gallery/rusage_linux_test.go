package gallery

import (
	"runtime"
	"syscall"
	"time"
)

func init() {
	threadCPU = func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	lockThread, unlockThread = runtime.LockOSThread, runtime.UnlockOSThread
}
