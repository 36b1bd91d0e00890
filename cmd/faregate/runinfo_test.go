package main

import (
	"maps"
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

// TestRunInfoFlags: run.flags holds every flag set, on the command line or
// through its FAREGATE_ variable (those named in flags_from_env), with the
// value the run used; the command line wins over the variable; NKey seeds,
// keys and tokens are left out, but the city's random --seed is kept.
func TestRunInfoFlags(t *testing.T) {
	for _, tc := range []struct {
		command []string
		args    []string
		env     map[string]string
		want    map[string]string
		fromEnv []string
	}{
		{
			command: []string{"simulate"},
			args:    []string{"--seed", "7", "--period", "3s"},
			env:     map[string]string{"FAREGATE_PASSENGERS": "100", "FAREGATE_PERIOD": "9s", "FAREGATE_LOG_FORMAT": "json"},
			want:    map[string]string{"seed": "7", "period": "3s", "passengers": "100", "log-format": "json"},
			fromEnv: []string{"log-format", "passengers"},
		},
		{
			command: []string{"clearing"},
			args:    []string{"--eth-key", "/etc/faregate/eth.key"},
			env:     map[string]string{"FAREGATE_NATS_SEED": "/etc/faregate/clearing.nk", "FAREGATE_PERIOD": "30s"},
			want:    map[string]string{"period": "30s"},
			fromEnv: []string{"period"},
		},
		{
			command: []string{"chaos"},
			args:    []string{"--terminals", "8"},
			env:     map[string]string{"FAREGATE_PERIOD": "5s"},
			want:    map[string]string{"terminals": "8", "period": "5s"},
			fromEnv: []string{"period"},
		},
	} {
		cmd, _, err := newRootCmd().Find(tc.command)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatalf("%v %v: %v", tc.command, tc.args, err)
		}
		if err := bindEnv(cmd, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
			t.Fatalf("%v %v: %v", tc.command, tc.env, err)
		}
		ri := newRunInfo(cmd, tc.args)
		if !maps.Equal(ri.Flags, tc.want) || !slices.Equal(ri.FlagsFromEnv, tc.fromEnv) {
			t.Errorf("%v %v with %v: flags %v from the environment %v, want %v from %v",
				tc.command, tc.args, tc.env, ri.Flags, ri.FlagsFromEnv, tc.want, tc.fromEnv)
		}
		// Every other flag at its default, secrets left out.
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			_, set := tc.want[f.Name]
			v, dflt := ri.Defaults[f.Name]
			switch {
			case set || secretFlag(f.Name) || f.Name == "help":
				if dflt {
					t.Errorf("%v: --%s in the defaults", tc.command, f.Name)
				}
			case !dflt || v != f.DefValue:
				t.Errorf("%v: --%s's default %q not in the defaults (%q)", tc.command, f.Name, f.DefValue, v)
			}
		})
	}
}

// TestSecretFlag: flags that hold or name secrets are secret, the random
// seed and flags merely containing the letters are not.
func TestSecretFlag(t *testing.T) {
	for name, want := range map[string]bool{
		"seed": false, "passengers": false, "period": false, "seeds": false,
		"nats-seed": true, "clearing-seed": true, "key": true, "eth-key": true, "verifier-key": true,
		"token": true, "api-tokens": true, "card-token": true, "nats-tls-key": true,
	} {
		if got := secretFlag(name); got != want {
			t.Errorf("secretFlag(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestShellCommand: the command row of a report reads back as the command
// that ran: an empty value and one with spaces or quotes are quoted.
func TestShellCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"faregate", "simulate", "--http", "", "--days", "1"}, `faregate simulate --http '' --days 1`},
		{[]string{"faregate", "simulate", "--data", "/tmp/a run", "--report", "r.json"}, `faregate simulate --data '/tmp/a run' --report r.json`},
		{[]string{"faregate", "chaos", "--kinds", "it's"}, `faregate chaos --kinds 'it'\''s'`},
		{[]string{"faregate", "simulate", "--http=127.0.0.1:8080", "--rate", "1e3"}, `faregate simulate --http=127.0.0.1:8080 --rate 1e3`},
	} {
		if got := shellCommand(tc.args); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}
