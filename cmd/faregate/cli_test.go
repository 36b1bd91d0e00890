package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spf13/pflag"

	"github.com/faregate/faregate/clearing"
)

// captureLogs points the process's logs at a buffer for the test and puts
// the default logger back afterwards.
func captureLogs(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	prevOut, prevLog, prevFlags := logOutput, slog.Default(), activeLog
	logOutput = &buf
	t.Cleanup(func() { logOutput, activeLog = prevOut, prevFlags; slog.SetDefault(prevLog) })
	return &buf
}

// TestExitCodes runs the root command in-process and maps its error as main
// does: usage errors (unknown subcommand or flag, bad or missing flag value,
// wrong arguments) are 64 and leave nothing behind, runtime failures are 1.
func TestExitCodes(t *testing.T) {
	captureLogs(t)
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "missing")
	notPEM := filepath.Join(tmp, "not-pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eurRegistry := filepath.Join(tmp, "registry-eur.json")
	if err := os.WriteFile(eurRegistry, []byte(`{"currency":"EUR","operators":[{"id":"metro","name":"Metro","flat_fare":250}],"terminals":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.Addr().String()
	tests := []struct {
		name string
		args []string
		want int
		// created must not exist afterwards: the flags were checked before
		// anything was written.
		created string
	}{
		{"bare root prints help", nil, exitOK, ""},
		{"version", []string{"version"}, exitOK, ""},
		{"--version", []string{"--version"}, exitOK, ""},
		{"group prints help", []string{"ledger"}, exitOK, ""},
		{"help of a command", []string{"help", "ledger", "audit"}, exitOK, ""},
		{"help of an unknown topic", []string{"help", "bogus"}, exitUsage, ""},
		{"help of an unknown subtopic", []string{"help", "ledger", "bogus"}, exitUsage, ""},
		{"unknown command", []string{"bogus"}, exitUsage, ""},
		{"unknown ledger subcommand", []string{"ledger", "bogus"}, exitUsage, ""},
		{"unknown clearing subcommand", []string{"clearing", "bogus"}, exitUsage, ""},
		{"unknown faces subcommand", []string{"clearing", "faces", "bogus"}, exitUsage, ""},
		{"unknown nats subcommand", []string{"nats", "bogus"}, exitUsage, ""},
		{"unknown terminal subcommand", []string{"terminal", "keygen", "bogus", "--id", "t", "--operator", "o", "--stop", "s", "--key", filepath.Join(tmp, "a.key")}, exitUsage, filepath.Join(tmp, "a.key")},
		{"unknown flag", []string{"clearing", "--bogus"}, exitUsage, ""},
		{"unknown persistent flag value", []string{"--log-level", "loud", "version"}, exitUsage, ""},
		{"bad log format", []string{"--log-format", "xml", "version"}, exitUsage, ""},
		{"bad duration", []string{"clearing", "--period", "abc"}, exitUsage, ""},
		{"version takes no args", []string{"version", "extra"}, exitUsage, ""},
		{"clearing zero period", []string{"clearing", "--data", filepath.Join(tmp, "c1"), "--period", "0s"}, exitUsage, filepath.Join(tmp, "c1")},
		{"clearing negative rider cache", []string{"clearing", "--data", filepath.Join(tmp, "c2"), "--rider-cache", "-1"}, exitUsage, filepath.Join(tmp, "c2")},
		{"clearing tls half", []string{"clearing", "--data", filepath.Join(tmp, "c3"), "--http-tls-cert", "x.pem"}, exitUsage, filepath.Join(tmp, "c3")},
		{"clearing unknown acquirer", []string{"clearing", "--data", filepath.Join(tmp, "c4"), "--acquirer", "visa"}, exitUsage, filepath.Join(tmp, "c4")},
		{"simulate negative duration", []string{"simulate", "--data", filepath.Join(tmp, "s1"), "--http", "", "--duration", "-5s"}, exitUsage, filepath.Join(tmp, "s1")},
		{"simulate zero rate", []string{"simulate", "--data", filepath.Join(tmp, "s2"), "--http", "", "--rate", "0"}, exitUsage, filepath.Join(tmp, "s2")},
		{"simulate zero period", []string{"simulate", "--data", filepath.Join(tmp, "s3"), "--http", "", "--period", "0s"}, exitUsage, filepath.Join(tmp, "s3")},
		{"simulate share over 1", []string{"simulate", "--data", filepath.Join(tmp, "s4"), "--http", "", "--concession", "1.5"}, exitUsage, filepath.Join(tmp, "s4")},
		{"simulate args", []string{"simulate", "now"}, exitUsage, ""},
		{"simulate find-peak with an API address", []string{"simulate", "--find-peak", "--data", filepath.Join(tmp, "s6"), "--http", "127.0.0.1:0"}, exitUsage, filepath.Join(tmp, "s6")},
		{"simulate one gate with bad messages", []string{"simulate", "--data", filepath.Join(tmp, "s5"), "--http", "", "--operators", "1", "--stops", "1", "--gates", "1"}, exitUsage, filepath.Join(tmp, "s5")},
		{"keygen without ids", []string{"terminal", "keygen", "--key", filepath.Join(tmp, "k.key")}, exitUsage, filepath.Join(tmp, "k.key")},
		{"terminal without ids", []string{"terminal", "--key", filepath.Join(tmp, "t.key"), "--data", filepath.Join(tmp, "t")}, exitUsage, filepath.Join(tmp, "t.key")},
		{"terminal bad source", []string{"terminal", "--id", "t", "--operator", "o", "--stop", "s", "--clearing-key", "0x" + strings.Repeat("ab", 32), "--source", "bogus", "--key", filepath.Join(tmp, "t2.key"), "--data", filepath.Join(tmp, "t2")}, exitUsage, filepath.Join(tmp, "t2.key")},
		{"terminal nats url an unbracketed IPv6 host", []string{"terminal", "--id", "t", "--operator", "o", "--stop", "s", "--clearing-key", "0x" + strings.Repeat("ab", 32), "--nats", "::::", "--key", filepath.Join(tmp, "t3b.key"), "--data", filepath.Join(tmp, "t3b")}, exitUsage, filepath.Join(tmp, "t3b.key")},
		{"ledger status with an operator id of two words", []string{"ledger", "status", "--data", filepath.Join(tmp, "l1"), "--operator", "x y"}, exitUsage, filepath.Join(tmp, "l1")},
		{"ledger status with an operator id too long for the ledger", []string{"ledger", "status", "--data", filepath.Join(tmp, "l2"), "--operator", strings.Repeat("o", 33)}, exitUsage, filepath.Join(tmp, "l2")},
		{"ledger acknowledge with an operator id too long for the ledger", []string{"ledger", "acknowledge", "--data", filepath.Join(tmp, "l3"), "--operator", strings.Repeat("o", 34), "--batch", "1"}, exitUsage, filepath.Join(tmp, "l3")},
		{"ledger status with an eth-rpc that is no URL", []string{"ledger", "status", "--eth-rpc", "notaurl", "--contract", "0x" + strings.Repeat("1", 40)}, exitUsage, ""},
		{"ledger status with a contract that is no address", []string{"ledger", "status", "--eth-rpc", "http://127.0.0.1:1", "--contract", "0xZZ"}, exitUsage, ""},
		{"terminal zero rate", []string{"terminal", "--id", "t", "--operator", "o", "--stop", "s", "--clearing-key", "0x" + strings.Repeat("ab", 32), "--source", "generate", "--rate", "0", "--key", filepath.Join(tmp, "t3.key"), "--data", filepath.Join(tmp, "t3")}, exitUsage, filepath.Join(tmp, "t3.key")},
		{"terminal short clearing key", []string{"terminal", "--id", "t", "--operator", "o", "--stop", "s", "--clearing-key", "0x00", "--key", filepath.Join(tmp, "t4.key"), "--data", filepath.Join(tmp, "t4")}, exitUsage, filepath.Join(tmp, "t4.key")},
		{"clearing zero fetch", []string{"clearing", "--data", filepath.Join(tmp, "c5"), "--fetch", "0"}, exitUsage, filepath.Join(tmp, "c5")},
		{"clearing huge fetch", []string{"clearing", "--data", filepath.Join(tmp, "c7"), "--fetch", "99999999999"}, exitUsage, filepath.Join(tmp, "c7")},
		{"clearing token rate below one a second", []string{"clearing", "--data", filepath.Join(tmp, "c9"), "--api-token-rate", "1e-300", "--api-token-burst", "1"}, exitUsage, filepath.Join(tmp, "c9")},
		{"clearing token rate without a burst", []string{"clearing", "--data", filepath.Join(tmp, "c10"), "--api-token-rate", "10", "--api-token-burst", "0"}, exitUsage, filepath.Join(tmp, "c10")},
		{"clearing token rate NaN", []string{"clearing", "--data", filepath.Join(tmp, "c11"), "--api-token-rate", "NaN"}, exitUsage, filepath.Join(tmp, "c11")},
		{"verifier huge fetch", []string{"clearing", "verifier", "--data", filepath.Join(tmp, "c8"), "--fetch", "5001", "--nats", "nats://127.0.0.1:1", "--nats-seed", filepath.Join(tmp, "v.nk")}, exitUsage, filepath.Join(tmp, "c8")},
		// An empty data dir is refused before anything is made in the
		// working directory (a chain there, once).
		{"clearing empty data", []string{"clearing", "--data", "", "--http", "", "--nats-listen", "127.0.0.1:0"}, exitUsage, "chain"},
		{"terminal empty data", []string{"terminal", "--data", " ", "--id", "t", "--operator", "o", "--stop", "s", "--clearing-key", "0x" + strings.Repeat("ab", 32), "--key", filepath.Join(tmp, "t5.key")}, exitUsage, filepath.Join(tmp, "t5.key")},
		{"clearing bad nats listen", []string{"clearing", "--data", filepath.Join(tmp, "c6"), "--nats-listen", "nonsense"}, exitUsage, filepath.Join(tmp, "c6")},
		// A feed that does not fit the registry (CAD, agency TL, against a
		// EUR registry of metro) is refused before the chain is made.
		{"clearing feed not fitting the registry", []string{"clearing", "--data", filepath.Join(tmp, "c10"), "--registry", eurRegistry, "--http", "",
			"--feed", filepath.Join(shared(t), "testdata", "gtfs", "gtfsorg-translink-guide"), "--nats-listen", "127.0.0.1:0"}, exitFailure, filepath.Join(tmp, "c10")},
		// A port in use fails before a chain is made in a new data dir,
		// naming the flag (not after a 10 s wait for a server).
		{"clearing http port in use", []string{"clearing", "--data", filepath.Join(tmp, "c12"), "--registry", eurRegistry, "--http", inUse}, exitFailure, filepath.Join(tmp, "c12", "chain")},
		{"clearing nats port in use", []string{"clearing", "--data", filepath.Join(tmp, "c13"), "--registry", eurRegistry, "--http", "127.0.0.1:0", "--nats-listen", inUse}, exitFailure, filepath.Join(tmp, "c13", "chain")},
		{"clearing chain rpc port in use", []string{"clearing", "--data", filepath.Join(tmp, "c14"), "--registry", eurRegistry, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--chain-rpc-listen", inUse}, exitFailure, filepath.Join(tmp, "c14", "chain")},
		{"clearing nats listen port out of range", []string{"clearing", "--data", filepath.Join(tmp, "c6b"), "--nats-listen", "127.0.0.1:70000"}, exitUsage, filepath.Join(tmp, "c6b")},
		{"clearing nats listen port with junk", []string{"clearing", "--data", filepath.Join(tmp, "c6c"), "--nats-listen", "127.0.0.1:4222x"}, exitUsage, filepath.Join(tmp, "c6c")},
		{"clearing chain rpc listen port out of range", []string{"clearing", "--data", filepath.Join(tmp, "c6d"), "--chain-rpc-listen", "127.0.0.1:70000"}, exitUsage, filepath.Join(tmp, "c6d")},
		{"clearing chain rpc listen with a remote chain", []string{"clearing", "--data", filepath.Join(tmp, "c6e"), "--chain-rpc-listen", "127.0.0.1:8545", "--eth-rpc", "http://127.0.0.1:1", "--eth-key", "k"}, exitUsage, filepath.Join(tmp, "c6e")},
		{"clearing verifier key without a partition", []string{"clearing", "--data", filepath.Join(tmp, "c7b"), "--verifier-partitions", "2", "--verifier-key", "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}, exitUsage, filepath.Join(tmp, "c7b")},
		{"clearing verifier key for a partition out of range", []string{"clearing", "--data", filepath.Join(tmp, "c7c"), "--verifier-partitions", "2", "--verifier-key", "2=UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}, exitUsage, filepath.Join(tmp, "c7c")},
		{"terminal camera directory missing", []string{"terminal", "--id", "t", "--operator", "o", "--stop", "s", "--clearing-key", "0x" + strings.Repeat("ab", 32), "--camera", filepath.Join(tmp, "no-such-camera"), "--key", filepath.Join(tmp, "t5.key"), "--data", filepath.Join(tmp, "t5")}, exitUsage, filepath.Join(tmp, "t5.key")},
		{"clearing verifier key without partitions", []string{"clearing", "--data", filepath.Join(tmp, "c7"), "--verifier-key", "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}, exitUsage, filepath.Join(tmp, "c7")},
		{"clearing bad verifier key", []string{"clearing", "--data", filepath.Join(tmp, "c8"), "--verifier-partitions", "2", "--verifier-key", "not-a-key"}, exitUsage, filepath.Join(tmp, "c8")},
		{"clearing too many verifier partitions", []string{"clearing", "--data", filepath.Join(tmp, "c9"), "--verifier-partitions", "65"}, exitUsage, filepath.Join(tmp, "c9")},
		{"clearing zero event age", []string{"clearing", "--data", filepath.Join(tmp, "c10"), "--event-max-age", "0s"}, exitUsage, filepath.Join(tmp, "c10")},
		{"clearing min free over 1 TiB", []string{"clearing", "--data", filepath.Join(tmp, "c15"), "--min-free-mib", "2000000"}, exitUsage, filepath.Join(tmp, "c15")},
		{"clearing negative quarantine bytes", []string{"clearing", "--data", filepath.Join(tmp, "c11"), "--quarantine-max-bytes", "-1"}, exitUsage, filepath.Join(tmp, "c11")},
		{"verifier without nats", []string{"clearing", "verifier", "--nats-seed", filepath.Join(tmp, "v.nk")}, exitUsage, ""},
		{"clearing nats url of another scheme", []string{"clearing", "--data", filepath.Join(tmp, "c12"), "--nats", "notaurl://127.0.0.1:4222", "--nats-seed", filepath.Join(tmp, "c.nk")}, exitUsage, filepath.Join(tmp, "c12")},
		{"clearing nats url an unbracketed IPv6 host", []string{"clearing", "--data", filepath.Join(tmp, "c13b"), "--nats", "::::", "--nats-seed", filepath.Join(tmp, "c.nk")}, exitUsage, filepath.Join(tmp, "c13b")},
		{"clearing nats url port out of range", []string{"clearing", "--data", filepath.Join(tmp, "c13"), "--nats", "nats://127.0.0.1:99999", "--nats-seed", filepath.Join(tmp, "c.nk")}, exitUsage, filepath.Join(tmp, "c13")},
		{"clearing nats ca not PEM", []string{"clearing", "--data", filepath.Join(tmp, "c14"), "--nats", "nats://127.0.0.1:4222", "--nats-seed", filepath.Join(tmp, "c.nk"), "--nats-ca", notPEM}, exitUsage, filepath.Join(tmp, "c14")},
		{"verifier nats url port out of range", []string{"clearing", "verifier", "--nats", "nats://127.0.0.1:99999", "--nats-seed", filepath.Join(tmp, "v.nk")}, exitUsage, ""},
		{"verifier negative partition", []string{"clearing", "verifier", "--nats", "nats://127.0.0.1:1", "--nats-seed", filepath.Join(tmp, "v.nk"), "--partition", "-1"}, exitUsage, ""},
		{"verifier eth-rpc without contract", []string{"clearing", "verifier", "--nats", "nats://127.0.0.1:1", "--nats-seed", filepath.Join(tmp, "v.nk"), "--eth-rpc", "http://127.0.0.1:1"}, exitUsage, ""},
		{"simulate negative verifier partitions", []string{"simulate", "--data", filepath.Join(tmp, "s5"), "--http", "", "--verifier-partitions", "-1"}, exitUsage, filepath.Join(tmp, "s5")},
		{"audit zero timeout", []string{"ledger", "audit", "--data", filepath.Join(tmp, "a1"), "--timeout", "0s"}, exitUsage, ""},
		{"audit next feed without its time", []string{"ledger", "audit", "--data", filepath.Join(tmp, "a1"), "--feed", missing, "--next-feed", missing}, exitUsage, ""},
		{"prove without event", []string{"ledger", "prove"}, exitUsage, ""},
		{"give-up without a sequence", []string{"terminal", "give-up", "--data", filepath.Join(tmp, "g1"), "--key", missing, "--id", "t1", "--operator", "metro", "--stop", "S1"}, exitUsage, filepath.Join(tmp, "g1")},
		{"give-up without an id", []string{"terminal", "give-up", "--data", filepath.Join(tmp, "g2"), "--key", missing, "--operator", "metro", "--stop", "S1", "--sequence", "3"}, exitUsage, filepath.Join(tmp, "g2")},
		{"give-up with an operator id with a dot", []string{"terminal", "give-up", "--data", filepath.Join(tmp, "g3"), "--key", missing, "--id", "t1", "--operator", "me.tro", "--sequence", "3"}, exitUsage, filepath.Join(tmp, "g3")},
		{"audit without a store", []string{"ledger", "audit"}, exitUsage, ""},
		{"nats user without a key", []string{"nats", "user", "--id", "t1"}, exitUsage, ""},
		{"nats user bad public key", []string{"nats", "user", "--id", "t1", "--public-key", "0xzz"}, exitUsage, ""},
		{"nats user bad id", []string{"nats", "user", "--id", "t 1", "--public-key", "0x" + strings.Repeat("ab", 32)}, exitUsage, ""},
		{"cpu profile in a missing directory", []string{"--cpu-profile", filepath.Join(tmp, "no", "cpu.prof"), "version"}, exitUsage, ""},
		{"fares check without feed", []string{"fares", "check"}, exitUsage, ""},
		{"face detect without image", []string{"face", "detect"}, exitUsage, ""},
		{"fares check of a missing feed", []string{"fares", "check", "--feed", missing, "--cases", missing}, exitFailure, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, tt.args...)
			if got := exitCode(err); got != tt.want {
				t.Errorf("faregate %s: exit %d (error %v), want %d\n%s", strings.Join(tt.args, " "), got, err, tt.want, out)
			}
			if tt.created != "" {
				if _, err := os.Stat(tt.created); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("faregate %s created %s before failing (stat: %v)", strings.Join(tt.args, " "), tt.created, err)
				}
			}
		})
	}
}

// TestEveryCommandHasExample keeps `--help` of every command showing how it
// is called.
func TestEveryCommandHasExample(t *testing.T) {
	var missing []string
	root := newRootCmd()
	stack := root.Commands()
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = append(stack[:len(stack)-1], c.Commands()...)
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || c.HasParent() && c.Parent().Name() == "completion" {
			continue
		}
		if strings.TrimSpace(c.Example) == "" {
			missing = append(missing, c.CommandPath())
		}
		// pflag shows the first `quoted` word of a usage as the flag's
		// value: a quoted command there reads as a value to type.
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " ") {
				t.Errorf("%s --%s shows its value as %q: quote a placeholder (`FILE`) first, or no command", c.CommandPath(), f.Name, name)
			}
		})
	}
	if len(missing) > 0 {
		t.Errorf("commands without an Example in their help:\n  %s", strings.Join(missing, "\n  "))
	}
}

// TestEnvBinding: FAREGATE_<FLAG> fills a flag the command line left unset,
// satisfies a required flag, loses to the command line, and names itself when
// its value does not parse.
func TestEnvBinding(t *testing.T) {
	buf := captureLogs(t)
	t.Setenv("FAREGATE_LOG_LEVEL", "debug")
	t.Setenv("FAREGATE_LOG_FORMAT", "json")
	if _, err := runCLI(t, "version"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"msg":"faregate starting"`) {
		t.Errorf("FAREGATE_LOG_LEVEL=debug FAREGATE_LOG_FORMAT=json: log %q, want the JSON debug line", buf.String())
	}

	buf.Reset()
	if _, err := runCLI(t, "--log-level", "info", "version"); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("--log-level info over FAREGATE_LOG_LEVEL=debug: logged %q, want nothing", buf.String())
	}

	// A required flag from the environment: terminal keygen with its ids
	// from FAREGATE_ID, FAREGATE_OPERATOR and FAREGATE_STOP.
	t.Setenv("FAREGATE_LOG_LEVEL", "info")
	key := filepath.Join(t.TempDir(), "env.key")
	t.Setenv("FAREGATE_ID", "t-env")
	t.Setenv("FAREGATE_OPERATOR", "metro")
	t.Setenv("FAREGATE_STOP", "S9")
	t.Setenv("FAREGATE_KEY", key)
	out, err := runCLI(t, "terminal", "keygen", "--stop", "S1")
	if err != nil {
		t.Fatalf("keygen with ids from the environment: %v\n%s", err, out)
	}
	for _, want := range []string{`"id": "t-env"`, `"operator": "metro"`, `"stop": "S1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("keygen output %q: want %s", out, want)
		}
	}
	if _, err := os.Stat(key); err != nil {
		t.Errorf("FAREGATE_KEY=%s: key not written there: %v", key, err)
	}

	t.Setenv("FAREGATE_PERIOD", "soon")
	_, err = runCLI(t, "clearing", "--data", filepath.Join(t.TempDir(), "c"))
	if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "FAREGATE_PERIOD") {
		t.Errorf("FAREGATE_PERIOD=soon: %v (exit %d), want a usage error naming FAREGATE_PERIOD", err, exitCode(err))
	}
}

// TestUsageErrorNamesVariable: a check after parsing names the flag; when
// the flag came from its FAREGATE_ variable, the variable is said too (not
// its value, which may be a secret), and a flag whose name merely begins
// the one named is not.
func TestUsageErrorNamesVariable(t *testing.T) {
	captureLogs(t)
	tests := []struct {
		env      map[string]string
		args     []string
		want     string
		wantNote string
	}{
		{map[string]string{"FAREGATE_PERIOD": "1ms"}, []string{"clearing", "--data", filepath.Join(t.TempDir(), "c")},
			"--period 1ms: want a settlement period", "(--period was given by the environment: FAREGATE_PERIOD)"},
		{nil, []string{"clearing", "--data", filepath.Join(t.TempDir(), "c"), "--period", "1ms"},
			"--period 1ms: want a settlement period", ""},
	}
	for _, tc := range tests {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		var stderr bytes.Buffer
		code := execute(newRootCmd(), tc.args, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: exit %d, %q; want a usage error saying %q", tc.env, tc.args, code, stderr.String(), tc.want)
		}
		if got := strings.Contains(stderr.String(), "given by the environment"); got != (tc.wantNote != "") || !strings.Contains(stderr.String(), tc.wantNote) {
			t.Errorf("%v %v: %q; want the note %q", tc.env, tc.args, stderr.String(), tc.wantNote)
		}
		for k := range tc.env {
			os.Unsetenv(k)
		}
	}
	cmd := newTerminalCmd()
	if err := bindEnv(cmd, func(name string) (string, bool) { return "3", name == "FAREGATE_RATE" }); err != nil {
		t.Fatal(err)
	}
	for msg, want := range map[string]string{
		"--rate 3: too fast": "rate", "--rate-limit 3: no": "", "--rate": "rate", "FAREGATE_RATE=3 (for --rate): bad": "",
	} {
		got := strings.Join(flagsFromEnvIn(cmd, msg), ",")
		if got != want {
			t.Errorf("flagsFromEnvIn(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestEnvBindingSkipsExcludedFlags: a variable for a flag that the command
// line's flag excludes (MarkFlagsMutuallyExclusive) is ignored rather than
// turned into a conflict the user never typed.
// TestEnvBindingSkipsCommandLineOnly: a flag for one start is not taken
// from the environment (an environment file would keep it set for every
// start after).
func TestEnvBindingSkipsCommandLineOnly(t *testing.T) {
	cmd := newTerminalCmd()
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	if err := bindEnv(cmd, func(name string) (string, bool) {
		if name == "FAREGATE_ACCEPT_LOST_TAPS" || name == "FAREGATE_RATE" {
			return map[string]string{"FAREGATE_ACCEPT_LOST_TAPS": "true", "FAREGATE_RATE": "3"}[name], true
		}
		return "", false
	}); err != nil {
		t.Fatal(err)
	}
	if f := cmd.Flags().Lookup("accept-lost-taps"); f.Changed || f.Value.String() != "false" {
		t.Errorf("--accept-lost-taps from FAREGATE_ACCEPT_LOST_TAPS: %s, want it left unset", f.Value)
	}
	if f := cmd.Flags().Lookup("rate"); !f.Changed || f.Value.String() != "3" {
		t.Errorf("--rate from FAREGATE_RATE: %s, want 3 (other flags still bound)", f.Value)
	}
	if !strings.Contains(stderr.String(), "FAREGATE_ACCEPT_LOST_TAPS is ignored") {
		t.Errorf("the ignored variable not said: %q", stderr.String())
	}
}

func TestEnvBindingSkipsExcludedFlags(t *testing.T) {
	captureLogs(t)
	t.Setenv("FAREGATE_DATA", filepath.Join(t.TempDir(), "elsewhere"))
	_, err := runCLI(t, "ledger", "status", "--clearing-data", filepath.Join(t.TempDir(), "none"))
	if err != nil && strings.Contains(err.Error(), "none of the others") {
		t.Errorf("FAREGATE_DATA with --clearing-data: %v, want the variable ignored", err)
	}
}

// TestLogFormatJSON: every line logged with --log-format json is one JSON
// object with time, level and msg.
func TestLogFormatJSON(t *testing.T) {
	buf := captureLogs(t)
	if _, err := runCLI(t, "--log-format", "json", "--log-level", "debug", "version"); err != nil {
		t.Fatal(err)
	}
	slog.Info("after the command", "n", 1)
	sc := bufio.NewScanner(buf)
	lines := 0
	for sc.Scan() {
		lines++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line %q has no %q", sc.Text(), k)
			}
		}
	}
	if lines < 2 {
		t.Errorf("%d JSON log lines, want the start-up debug line and the one logged after", lines)
	}
}

// TestQuietLoggerFollowsFormat: the error-only logger of the read-only
// commands writes in the --log-format asked for and drops warnings.
func TestQuietLoggerFollowsFormat(t *testing.T) {
	captureLogs(t)
	if _, err := runCLI(t, "--log-format", "json", "version"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	q := quietLogger(&buf)
	q.Warn("P2P server will be useless")
	q.Error("chain failed", "n", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "chain failed" {
		t.Errorf("quiet logger with --log-format json wrote %q (%v), want only the error as one JSON object", buf.String(), err)
	}
}

// TestVersion: `faregate version` and `faregate --version` print the same
// module version and Go version.
func TestVersion(t *testing.T) {
	captureLogs(t)
	a, err := runCLI(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	b, err := runCLI(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("version:\n%s--version:\n%s\nwant the same", a, b)
	}
	if !strings.HasPrefix(a, "faregate ") || !strings.Contains(a, runtime.Version()) || !strings.Contains(a, "commit:") {
		t.Errorf("version output %q: want faregate <version>, commit and %s", a, runtime.Version())
	}
}

// TestBuildInfoGauge: faregate_build_info is 1 with the build in its labels.
func TestBuildInfoGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfoGauge())
	b := readBuildInfo()
	want := `# HELP faregate_build_info Build of this faregate process (value 1): module version, VCS commit, Go version.
# TYPE faregate_build_info gauge
faregate_build_info{commit="` + b.Commit + `",goversion="` + b.GoVersion + `",version="` + b.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "faregate_build_info"); err != nil {
		t.Error(err)
	}
}

// TestBinaryExitStatus builds the real binary (with its VCS stamp) and checks
// the process's exit status: 2 for a usage error, 1 for a runtime failure, 0
// for version, which names the checkout's commit.
func TestBinaryExitStatus(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "faregate")
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		args       []string
		want       int
		wantStderr string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"ledger", "bogus"}, 64, `unknown command "bogus" for "faregate ledger"`},
		{[]string{"simulate", "--duration", "-5s", "--http", ""}, 64, "--duration -5s"},
		{[]string{"fares", "check", "--feed", missing, "--cases", missing}, 1, missing},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append(os.Environ(), "FAREGATE_LOG_LEVEL=warn")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.want || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("faregate %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr.String(), tt.want, tt.wantStderr)
		}
		if tt.args[0] == "version" {
			head, err := exec.Command("git", "rev-parse", "HEAD").Output()
			if err != nil {
				t.Logf("git rev-parse HEAD: %v; the commit is not checked", err)
			} else if c := strings.TrimSpace(string(head)); !strings.Contains(string(out), c) {
				t.Errorf("version output %q does not name HEAD %s", out, c)
			}
		}
	}
}

// TestHelpUnknownTopic: `faregate help bogus` names the topic it does not
// know (cobra's own help printed the root's usage and exited 0).
func TestHelpUnknownTopic(t *testing.T) {
	var stderr bytes.Buffer
	if code := execute(newRootCmd(), []string{"help", "bogus"}, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), `unknown help topic "bogus"`) {
		t.Errorf("help bogus: exit %d\n%s", code, stderr.String())
	}
}

// provenTerminal is key's registry entry for terminal id of op at stop,
// with the key's proof of its registration (as `terminal keygen` prints).
func provenTerminal(key ed25519.PrivateKey, id, op, stop string) clearing.TerminalPublicKey {
	e, err := clearing.NewTerminalEntry(key, id, op, stop)
	if err != nil {
		panic(err)
	}
	return e
}

// TestClearingDataDirMadePrivate: `clearing key` on a data dir open to
// other users makes it owner-only, as clearing's start does (the journal,
// the rider key and the confirmation key live there; Badger's files are
// 0644).
func TestClearingDataDirMadePrivate(t *testing.T) {
	captureLogs(t)
	data := filepath.Join(t.TempDir(), "clearing")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "clearing", "key", "--data", data)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || !strings.HasPrefix(lines[len(lines)-1], "0x") || !strings.Contains(out, "made a new confirmation key in "+data) {
		t.Fatalf("clearing key: %q, %v: want the new key, and a note that it was made", out, err)
	}
	// Asked again, the key is only printed (a mistyped --data is noticed
	// by the note above).
	if again, err := runCLI(t, "clearing", "key", "--data", data); err != nil || again != lines[len(lines)-1]+"\n" {
		t.Errorf("clearing key again: %q, %v: want the same key alone", again, err)
	}
	if st, err := os.Stat(data); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
}
