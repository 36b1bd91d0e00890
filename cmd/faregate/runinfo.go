package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runInfo says what produced a report: the build, the machine and its load
// when the run began, and the command line. Figures differ a lot between
// machine kinds and loads (BENCHMARKS.md); a report that does not say
// which cannot be compared, nor the run repeated.
type runInfo struct {
	StartedAt   time.Time `json:"started_at"`
	Version     string    `json:"faregate_version"`
	Commit      string    `json:"commit"`
	GoVersion   string    `json:"go_version"`
	Platform    string    `json:"platform"`
	CPU         string    `json:"cpu,omitempty"`
	CPUs        int       `json:"cpus"`
	LoadAverage []float64 `json:"load_average,omitempty"` // 1, 5 and 15 minutes, at the start
	Args        []string  `json:"args"`
	// Flags are the flags set, on the command line or through their
	// FAREGATE_ variables, with the values the run used (secrets left
	// out: secretFlag); FlagsFromEnv names those of them set through
	// their variables.
	Flags        map[string]string `json:"flags,omitempty"`
	FlagsFromEnv []string          `json:"flags_from_env,omitempty"`
	// Defaults are the other flags, at the defaults the run used: a build
	// without version information cannot say them otherwise (an outside
	// review could not tell a report's rate or period).
	Defaults map[string]string `json:"defaults,omitempty"`
}

// newRunInfo reads the build, the machine and its load now, and cmd's
// flags as set (nil: none).
func newRunInfo(cmd *cobra.Command, args []string) runInfo {
	b := readBuildInfo()
	ri := runInfo{StartedAt: time.Now().UTC().Truncate(time.Second), Version: b.Version, Commit: b.Commit, GoVersion: b.GoVersion,
		Platform: b.Platform, CPU: cpuModel(), CPUs: runtime.NumCPU(), LoadAverage: loadAverage(), Args: args}
	if cmd != nil {
		// Visit sees flags set from the environment too: bindEnv sets
		// them through the FlagSet.
		cmd.Flags().Visit(func(f *pflag.Flag) {
			if secretFlag(f.Name) {
				return
			}
			if ri.Flags == nil {
				ri.Flags = map[string]string{}
			}
			ri.Flags[f.Name] = f.Value.String()
			if len(f.Annotations[fromEnvAnnotation]) > 0 {
				ri.FlagsFromEnv = append(ri.FlagsFromEnv, f.Name)
			}
		})
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Changed || secretFlag(f.Name) || f.Name == "help" {
				return
			}
			if ri.Defaults == nil {
				ri.Defaults = map[string]string{}
			}
			ri.Defaults[f.Name] = f.Value.String()
		})
	}
	return ri
}

// secretFlag reports whether the flag called name holds a secret or
// names one (a key, an NKey seed such as --nats-seed, a token, a
// password), which a report that is passed around must not carry. The
// city's random --seed is no secret: the run cannot be repeated without it.
func secretFlag(name string) bool {
	for _, secret := range []string{"key", "token", "secret", "password"} {
		if strings.Contains(name, secret) {
			return true
		}
	}
	return strings.HasSuffix(name, "-seed") || strings.HasPrefix(name, "seed-")
}

// cpuModel is the first "model name" of /proc/cpuinfo ("" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAverage is /proc/loadavg's three figures (nil elsewhere).
func loadAverage() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	var out []float64
	for _, f := range strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

// dropDefaults leaves the flags names out of ri's defaults: settings that
// do not apply to the run.
func (ri *runInfo) dropDefaults(names ...string) {
	for _, n := range names {
		delete(ri.Defaults, n)
	}
}

// rows are ri as a report page's label and value rows, settings last.
func (ri runInfo) rows() [][2]string {
	rows := [][2]string{
		{"started", ri.StartedAt.Format(time.RFC3339)},
		{"faregate", ri.Version + " (commit " + ri.Commit + ", " + ri.GoVersion + ")"},
		{"machine", fmt.Sprintf("%s, %s, %d CPUs, load %v at the start", ri.Platform, ri.CPU, ri.CPUs, ri.LoadAverage)},
		{"command", shellCommand(append([]string{"faregate"}, ri.Args...))},
	}
	for _, m := range []struct {
		what  string
		flags map[string]string
	}{{"set", ri.Flags}, {"default", ri.Defaults}} {
		for _, name := range slices.Sorted(maps.Keys(m.flags)) {
			rows = append(rows, [2]string{"--" + name + " (" + m.what + ")", m.flags[name]})
		}
	}
	return rows
}

// shellCommand is args as a shell command line, each quoted where a shell
// would not read it back as it is (an empty --http "" was lost).
func shellCommand(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		plain := a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@%+") == ""
		if plain {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
