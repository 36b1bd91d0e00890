package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses of the faregate binary, in the convention of the tools
// operators already script around: a supervisor or a shell script can tell a
// command that was never going to run (fix the invocation) from one that ran
// and failed (look at the logs, maybe retry).
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	// exitUsage is sysexits' EX_USAGE, not 2: Go's runtime exits 2 on a
	// crash (a fatal error, an unrecovered panic), which a supervisor must
	// restart, while a usage error it must not.
	exitUsage = 64 // the command line was wrong; nothing was started
)

// usageError marks an error in how the command was invoked: an unknown
// subcommand or flag, a flag value that cannot be parsed or is out of range, a
// missing required flag, the wrong positional arguments. main exits with
// status 64 (exitUsage) for it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageErr returns a usageError with the message msg.
func usageErr(msg string) error { return usageError{errors.New(msg)} }

// usageErrorf returns a usageError with a message formatted as by fmt.Errorf
// (%w is honoured). Commands use it for flag checks done before anything is
// opened, created or started.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// asUsage marks err as a usage error; nil stays nil.
func asUsage(err error) error {
	if err == nil || errors.As(err, new(usageError)) {
		return err
	}
	return usageError{err}
}

// exitCode maps an error returned by the root command to the process's exit
// status.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, new(usageError)):
		return exitUsage
	}
	// cobra reports these itself, past the hooks that mark usage errors (a
	// subcommand with its own PersistentPreRunE replaces the root's).
	msg := err.Error()
	for _, p := range []string{"unknown command ", "unknown flag", "unknown shorthand flag", "required flag(s) ", "invalid argument ", "accepts ", "if any flags in the group", "at least one of the flags"} {
		if strings.HasPrefix(msg, p) {
			return exitUsage
		}
	}
	return exitFailure
}

// execute runs root with args, prints the error (and, for a usage error, where
// help is) to stderr and returns the exit status.
func execute(root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	activeProfile.stop()
	code := exitCode(err)
	if err != nil {
		fmt.Fprintln(stderr, "faregate:", err)
		if code == exitUsage && cmd != nil {
			for _, f := range flagsFromEnvIn(cmd, err.Error()) {
				fmt.Fprintf(stderr, "(--%s was given by the environment: %s)\n", f, envName(f))
			}
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return code
}

// finishCommandTree applies the command-line conventions every faregate
// command shares, in one place rather than in each command:
//   - a command with subcommands rejects any other word as an unknown
//     subcommand (cobra would print help and exit 0), and prints its help when
//     run bare;
//   - positional-argument checks and flag parse errors are usage errors;
//   - each command gets its Example and required flags (examples.go).
//
// It runs once the whole tree is built, cobra's help and completion commands
// included.
func finishCommandTree(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	// cobra's help prints "Unknown help topic" and exits 0; an unknown topic
	// is a usage error like an unknown command.
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Run, c.RunE = nil, func(c *cobra.Command, args []string) error {
				cmd, rest, err := c.Root().Find(args)
				if err != nil || cmd == nil || len(rest) > 0 {
					return usageErrorf("unknown help topic %q: see 'faregate help' for the commands", strings.Join(args, " "))
				}
				cmd.InitDefaultHelpFlag()
				return cmd.Help()
			}
		}
	}
	root.InitDefaultCompletionCmd()
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asUsage(err) })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			if c.Args == nil {
				c.Args = noSubcommand
			}
			if !c.Runnable() {
				c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
			}
		}
		documentCommand(c)
		if orig := c.Args; orig != nil {
			c.Args = func(cmd *cobra.Command, args []string) error { return asUsage(orig(cmd, args)) }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// noSubcommand is the Args check of a command that only groups others: any
// positional word is a mistyped subcommand.
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usageError{errors.New(msg)}
}

// envPrefix starts the environment variable that stands for a flag: --nats-seed
// is FAREGATE_NATS_SEED. Deployments (systemd units, containers) configure
// faregate through the environment as well as through flags.
const envPrefix = "FAREGATE_"

// envName is the environment variable bound to the flag called name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// mutuallyExclusiveAnnotation is the flag annotation in which cobra's
// MarkFlagsMutuallyExclusive records each group (names separated by spaces).
const mutuallyExclusiveAnnotation = "cobra_annotation_mutually_exclusive"

// commandLineOnly marks a flag bindEnv does not take from the environment:
// one meant for a single start (an environment file would keep it set).
const commandLineOnly = "faregate_command_line_only"

// markCommandLineOnly marks flag name of fs commandLineOnly.
func markCommandLineOnly(fs *pflag.FlagSet, name string) {
	_ = fs.SetAnnotation(name, commandLineOnly, []string{"true"})
}

// bindEnv sets each flag of cmd (its own and those it inherits) that the
// command line left unset from its FAREGATE_<NAME> environment variable, if
// that is set. The command line wins over the environment, which wins over the
// default. A value that does not parse is a usage error naming the variable.
func bindEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	fs := cmd.Flags()
	// A flag excluded by one given on the command line is not taken from the
	// environment: FAREGATE_DATA must not clash with --clearing-data.
	excluded := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		for _, group := range f.Annotations[mutuallyExclusiveAnnotation] {
			for _, other := range strings.Fields(group) {
				excluded[other] = true
			}
		}
	})
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Annotations[commandLineOnly] != nil && !f.Changed {
			if _, ok := lookup(envName(f.Name)); ok {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s is ignored: --%s is taken from the command line only (it is meant for one start)\n", envName(f.Name), f.Name)
			}
			return
		}
		if f.Changed || excluded[f.Name] || f.Name == "help" || f.Name == "version" || f.Annotations[commandLineOnly] != nil {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok {
			return
		}
		// Through the FlagSet, not f.Value: it marks the flag Changed (a
		// required flag given through the environment is given) and set, so
		// Visit (report.json's run.flags) sees it like one on the command line.
		if err := fs.Set(f.Name, v); err != nil {
			if cause := errors.Unwrap(err); cause != nil {
				err = cause // pflag's wrapping names the flag, as below
			}
			errs = append(errs, fmt.Errorf("%s=%q (for --%s): %w", envName(f.Name), v, f.Name, err))
			return
		}
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[fromEnvAnnotation] = []string{envName(f.Name)}
	})
	if len(errs) > 0 {
		return usageError{errors.Join(errs...)}
	}
	return nil
}

// fromEnvAnnotation marks a flag bindEnv set from its variable.
const fromEnvAnnotation = "faregate_from_env"

// flagsFromEnvIn lists the flags of cmd, set from their FAREGATE_ variable,
// that msg names as --name: a check done after parsing ("--rate must be
// positive") names the flag, and a user who never typed it looks for the
// variable. Values are not repeated: a variable may hold a secret.
func flagsFromEnvIn(cmd *cobra.Command, msg string) []string {
	var names []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if len(f.Annotations[fromEnvAnnotation]) == 0 || strings.Contains(msg, envName(f.Name)) {
			return
		}
		for rest := msg; ; {
			i := strings.Index(rest, "--"+f.Name)
			if i < 0 {
				return
			}
			rest = rest[i+2+len(f.Name):]
			// --rate, not --rate-limit.
			if rest == "" || !(rest[0] == '-' || rest[0] == '_' || 'a' <= rest[0] && rest[0] <= 'z' || '0' <= rest[0] && rest[0] <= '9') {
				names = append(names, f.Name)
				return
			}
		}
	})
	return names
}

// givenOnCommandLine reports whether the flag name was given on the command
// line itself, not through its FAREGATE_ variable (an image's or a shared
// environment file's default).
func givenOnCommandLine(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed && len(f.Annotations[fromEnvAnnotation]) == 0
}

// finiteFloats refuses NaN and infinite values of every float flag: each
// command's range checks (rate <= 0, share outside [0, 1]) are comparisons
// that NaN passes, and an infinite rate would run a loop for ever.
func finiteFloats(cmd *cobra.Command) error {
	var bad error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if bad != nil || f.Value.Type() != "float64" {
			return
		}
		v, err := strconv.ParseFloat(f.Value.String(), 64)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			bad = usageErrorf("--%s %s: want a finite number", f.Name, f.Value.String())
		}
	})
	return bad
}

// logFlags are the root's persistent logging flags.
type logFlags struct {
	level, format string
}

// logOutput is where the process logs; tests point it at a buffer.
var logOutput io.Writer = os.Stderr

// activeLog are the logging flags of the command being run, for loggers that
// log to somewhere else or less than the default one (quietLogger).
var activeLog = logFlags{level: "info", format: "text"}

// quietLogger logs only errors (or less, at a higher --log-level) to w, in
// the format --log-format asks for: commands that open the embedded chain
// only to read it (audit, prove, nats config) do not want its warnings.
func quietLogger(w io.Writer) *slog.Logger {
	lf := activeLog
	var level slog.Level
	if level.UnmarshalText([]byte(lf.level)) != nil || level < slog.LevelError {
		lf.level = "error"
	}
	h, err := lf.handler(w)
	if err != nil {
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelError})
	}
	return slog.New(h)
}

// handler builds the slog handler the flags ask for.
func (lf logFlags) handler(w io.Writer) (slog.Handler, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lf.level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", lf.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch lf.format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", lf.format)
}

// setUp is the root's PersistentPreRunE, run before every command: it binds
// the environment to the flags, checks the required flags (cobra checks them
// only later, after the environment could have supplied them), and installs
// the process-wide slog logger that every command and library logs through.
func (lf *logFlags) setUp(cmd *cobra.Command, _ []string) error {
	if err := bindEnv(cmd, os.LookupEnv); err != nil {
		return err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return asUsage(err)
	}
	if err := finiteFloats(cmd); err != nil {
		return err
	}
	// A data dir given as "" would otherwise be the working directory
	// for some of what a command makes and nothing for the rest.
	if f := cmd.Flags().Lookup("data"); f != nil && f.Changed && f.DefValue != "" && strings.TrimSpace(f.Value.String()) == "" {
		return usageErrorf("--data %q: empty: give a directory (default %s)", f.Value.String(), f.DefValue)
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return asUsage(err)
	}
	h, err := lf.handler(logOutput)
	if err != nil {
		return err
	}
	slog.SetDefault(slog.New(h))
	activeLog = *lf
	bi := readBuildInfo()
	slog.Debug("faregate starting", "command", cmd.CommandPath(), "version", bi.Version, "commit", bi.Commit)
	return nil
}

// buildInfo is what the binary knows about its own build.
type buildInfo struct {
	Version    string // the main module's version ("(devel)" without a VCS stamp)
	Commit     string // VCS revision, "+dirty" when the tree had local changes
	CommitTime string // VCS commit time (RFC 3339), empty when unknown
	GoVersion  string
	Platform   string // GOOS/GOARCH
}

// buildCommit is the commit a build without a VCS stamp was made from, set
// with -ldflags "-X main.buildCommit=..." (the image's build: its context
// has no .git).
var buildCommit string

// readBuildInfo reads the module version and the VCS stamp that the go
// command embeds in every binary built from a checkout (go build -buildvcs),
// or buildCommit where there is none.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)", Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if buildCommit != "" {
		b.Commit = buildCommit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; v != "" {
		b.Version = v
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Commit != "unknown" {
		b.Commit += "+dirty"
	}
	return b
}

// String is the text of `faregate version` and `faregate --version`.
func (b buildInfo) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "faregate %s\n", b.Version)
	fmt.Fprintf(&sb, "commit:      %s\n", b.Commit)
	if b.CommitTime != "" {
		fmt.Fprintf(&sb, "commit time: %s\n", b.CommitTime)
	}
	fmt.Fprintf(&sb, "go:          %s %s\n", b.GoVersion, b.Platform)
	return sb.String()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, VCS commit and Go version this binary was built from",
		Example: "  faregate version\n  faregate --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), readBuildInfo())
			return err
		},
	}
}

// buildInfoGauge is the faregate_build_info metric: constant 1, the build in
// its labels, so dashboards can tell which build each process runs and when
// it changed.
func buildInfoGauge() prometheus.Collector {
	b := readBuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "faregate_build_info",
		Help:        "Build of this faregate process (value 1): module version, VCS commit, Go version.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
