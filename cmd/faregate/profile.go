package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
)

// cpuProfile writes a CPU profile of the whole command (--cpu-profile): a
// load-testing engineer profiles clearing under `simulate --find-peak`, or
// any command, with the binary they run, not a test build.
type cpuProfile struct {
	path string
	file *os.File
}

// start begins profiling when a path was given; a file that cannot be
// created is a usage error, before the command starts.
func (p *cpuProfile) start() error {
	if p.path == "" {
		return nil
	}
	f, err := os.Create(p.path)
	if err != nil {
		return usageErrorf("--cpu-profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpu-profile %s: %w", p.path, err)
	}
	p.file = f
	return nil
}

// activeProfile is the process's CPU profile (pprof has one): execute
// stops it once the command returns, whether or not it failed.
var activeProfile cpuProfile

// stop ends the profile started by start, if any, and closes its file.
func (p *cpuProfile) stop() {
	if p.file == nil {
		return
	}
	pprof.StopCPUProfile()
	if err := p.file.Close(); err != nil {
		slog.Error("write the CPU profile", "file", p.path, "err", err)
	} else {
		slog.Info("CPU profile written (go tool pprof BINARY FILE)", "file", p.path)
	}
	p.file = nil
}
