package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/templates"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// deployHelperEnv makes TestDeployFaregateHelper act as the faregate binary:
// TestDeployCompose runs deploy/setup.sh with this test binary as $FAREGATE,
// so the script's own faregate commands (terminal keygen, clearing key, the
// clearing that creates the embedded chain, nats config) run for real without
// a 30-second build of the binary.
const deployHelperEnv = "DEPLOY_TEST_FAREGATE_HELPER"

// TestDeployFaregateHelper is not a test of its own: in a normal run it
// returns at once. Started by TestDeployCompose as `faregate.test
// -test.run=^TestDeployFaregateHelper$ -- ARGS...`, it runs faregate ARGS and
// exits with faregate's status.
func TestDeployFaregateHelper(t *testing.T) {
	if os.Getenv(deployHelperEnv) != "1" {
		return
	}
	args := os.Args[1:]
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[i+1:]
	}
	// syscall.Exit, not os.Exit: the testing package turns os.Exit(0) inside
	// a test into a panic, and anything it printed after the test would land
	// in the command's stdout (setup.sh reads `clearing key` from it).
	syscall.Exit(execute(newRootCmd(), args, os.Stderr))
}

// deployDir is the repository's deploy/ directory.
func deployDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// generatedDeployPaths are what deploy/setup.sh writes at the top of deploy/
// (and deploy/.gitignore keeps out of the repository).
var generatedDeployPaths = []string{"secrets", "config", "state", ".env"}

// copyDeploy copies deploy/'s committed files (not what setup.sh generated in
// a developer's checkout) into a new directory and returns it.
func copyDeploy(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "deploy")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if slices.Contains(generatedDeployPaths, strings.Split(filepath.ToSlash(rel), "/")[0]) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// runDeploySetup runs dir/setup.sh with this test binary as faregate.
func runDeploySetup(t *testing.T, dir string) {
	t.Helper()
	out, err := deploySetup(t, dir)
	if err != nil {
		t.Fatalf("deploy/setup.sh: %v\n%s", err, out)
	}
	t.Logf("deploy/setup.sh:\n%s", out)
}

// deploySetup runs dir/setup.sh with this test binary as faregate and env
// added to the environment.
func deploySetup(t *testing.T, dir string, env ...string) ([]byte, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, " \t\n") {
		t.Fatalf("test binary path %q has blanks: setup.sh splits $FAREGATE into words", exe)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, "setup.sh"))
	cmd.Dir = t.TempDir() // setup.sh must not depend on where it is run from
	cmd.Env = append(append(os.Environ(),
		"FAREGATE="+exe+" -test.run=^TestDeployFaregateHelper$ --",
		deployHelperEnv+"=1"), env...)
	return cmd.CombinedOutput()
}

// deployTerminal is a line of deploy/terminals.tsv.
type deployTerminal struct{ id, operator, stop string }

func readDeployTerminals(t *testing.T, dir string) []deployTerminal {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "terminals.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var ts []deployTerminal
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 {
			t.Fatalf("terminals.tsv: line %q: want id operator stop", l)
		}
		ts = append(ts, deployTerminal{f[0], f[1], f[2]})
	}
	if len(ts) == 0 {
		t.Fatal("terminals.tsv lists no terminal")
	}
	return ts
}

// faregateLine is one faregate command line parsed with the real commands.
type faregateLine struct {
	cmd *cobra.Command
	set map[string]string // flags given on the line, by name (their value as the flag prints it)
}

// parseFaregateLine parses args (without the binary) and env as `faregate`
// would: the subcommand is found in the real command tree, the flags parsed
// by its flag set, the FAREGATE_* variables bound as the root command binds
// them, and the required flags and flag groups checked. Every FAREGATE_*
// variable must stand for a flag of the command (or be one of the variables
// the README lists that hold a value rather than stand for a flag), and none
// may be shadowed by the same flag on the line, where it would silently be
// ignored.
func parseFaregateLine(args []string, env map[string]string) (*faregateLine, error) {
	root := newRootCmd()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return nil, err
	}
	if cmd == root || !cmd.Runnable() {
		return nil, fmt.Errorf("%q names no runnable faregate command", strings.Join(args, " "))
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, fmt.Errorf("faregate %s: %w", cmd.Name(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	line := &faregateLine{cmd: cmd, set: map[string]string{}}
	cmd.Flags().Visit(func(f *pflag.Flag) { line.set[f.Name] = f.Value.String() })
	nonFlag := []string{templates.KeyEnv, apiTokenEnv, faceDataEnv}
	for k := range env {
		if !strings.HasPrefix(k, envPrefix) || slices.Contains(nonFlag, k) {
			continue
		}
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, envPrefix), "_", "-"))
		switch {
		case cmd.Flags().Lookup(name) == nil:
			return nil, fmt.Errorf("%s: %s stands for --%s, which %s does not have", cmd.CommandPath(), k, name, cmd.CommandPath())
		case line.set[name] != "":
			return nil, fmt.Errorf("%s: %s is shadowed by --%s on the command line", cmd.CommandPath(), k, name)
		}
	}
	if err := bindEnv(cmd, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return nil, err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	return line, nil
}

// value is the flag's value after the command line and the environment.
func (l *faregateLine) value(name string) string {
	f := l.cmd.Flags().Lookup(name)
	if f == nil {
		return ""
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return strings.Join(sv.GetSlice(), ",")
	}
	return f.Value.String()
}

// hostPath maps a path inside a compose service's container to the file
// behind it on the host, through the service's bind mounts (the deepest
// mount wins); ok is false when no mount covers it.
func hostPath(svc types.ServiceConfig, p string) (string, bool) {
	best := -1
	host := ""
	for _, v := range svc.Volumes {
		tgt := path.Clean(v.Target)
		if (p == tgt || strings.HasPrefix(p, tgt+"/")) && len(tgt) > best {
			best, host = len(tgt), filepath.Join(v.Source, strings.TrimPrefix(p, tgt))
		}
	}
	return host, best >= 0
}

// natsURLHosts are the host:port pairs of a comma-separated NATS URL list.
func natsURLHosts(t *testing.T, list string) []string {
	t.Helper()
	var hosts []string
	for s := range strings.SplitSeq(list, ",") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "tls" || u.Port() == "" {
			t.Errorf("NATS URL %q: want tls://HOST:PORT (the servers require TLS)", s)
			continue
		}
		hosts = append(hosts, u.Host)
	}
	return hosts
}

func readCertPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no PEM certificate", file)
	}
	return pool
}

func readLeafCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

// verifyCertFor checks that cert chains to pool for each DNS name, for the
// given uses.
func verifyCertFor(t *testing.T, what string, cert *x509.Certificate, pool *x509.CertPool, names []string, uses ...x509.ExtKeyUsage) {
	t.Helper()
	for _, n := range names {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: n, Roots: pool, KeyUsages: uses}); err != nil {
			t.Errorf("%s certificate for %q (%v): %v", what, n, uses, err)
		}
	}
}

// natsServerVersion is the nats-server release go.mod requires (the one the
// embedded server is and `make nats-server` builds).
func natsServerVersion(t *testing.T) string {
	t.Helper()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/nats-io/nats-server/v2" {
			return strings.TrimPrefix(d.Version, "v")
		}
	}
	t.Fatal("nats-server is not a dependency")
	return ""
}

// TestDeployCompose runs deploy/setup.sh (openssl and this binary's faregate
// commands, for real) on a copy of deploy/ and checks compose.yaml against
// what it wrote: the file loads with compose-go (the loader docker compose
// uses: schema, interpolation from setup's .env, env files); every bind mount
// exists; every faregate command line and FAREGATE_* variable parses with the
// real commands, and every path it names is a file a mount provides; the
// terminals are terminals.tsv's and the registry's; the three nats-server
// files load with nats-server's own loader, each in its container's layout
// (mounts, working directory), into a TLS-only 3-route cluster with JetStream
// admitting exactly clearing and the registry's terminals; the certificates
// fit the names clients and routes use.
func TestDeployCompose(t *testing.T) {
	dir := copyDeploy(t, deployDir(t))
	runDeploySetup(t, dir)
	terms := readDeployTerminals(t, dir)

	// Run again for a shared chain, the NATS users come from that chain,
	// not from setup's bootstrap chain (an outside test saw a re-run
	// re-admit a terminal revoked on the shared chain): here no node
	// answers, so setup fails and leaves the users as they were.
	auth := filepath.Join(dir, "config", "nats", "auth.conf")
	before, err := os.ReadFile(auth)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]string{
		{"FAREGATE_SETUP_ETH_RPC=http://127.0.0.1:1", "FAREGATE_SETUP_CONTRACT=0x0000000000000000000000000000000000000001"},
		{"FAREGATE_SETUP_ETH_RPC=http://127.0.0.1:1"},
	} {
		out, err := deploySetup(t, dir, env...)
		if after, _ := os.ReadFile(auth); err == nil || bytes.Contains(out, []byte("bootstrap")) || !bytes.Equal(after, before) ||
			!bytes.Contains(out, []byte("open ledger")) && !bytes.Contains(out, []byte("go together")) {
			t.Fatalf("setup.sh with %v: %v\n%s\nwant it refused, reading only the shared chain, the NATS users unchanged", env, err, out)
		}
	}

	// setup.sh writes only what .gitignore keeps out of the repository, and
	// keeps private keys private.
	ignore, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(deployDir(t), e.Name())); err == nil && !slices.Contains(generatedDeployPaths, e.Name()) {
			continue // committed
		}
		pat := "/" + e.Name()
		if e.IsDir() {
			pat += "/"
		}
		if !slices.Contains(strings.Fields(string(ignore)), pat) {
			t.Errorf("setup.sh wrote %s, which deploy/.gitignore does not ignore (%s)", e.Name(), pat)
		}
	}
	err = filepath.WalkDir(filepath.Join(dir, "secrets"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if want := fs.FileMode(0o600); d.IsDir() {
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: mode %v, want no access for group and others", p, info.Mode().Perm())
			}
		} else if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir), cli.WithEnvFiles(), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	dotEnv, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	uid := regexp.MustCompile(`(?m)^FAREGATE_UID=(\d+)$`).FindSubmatch(dotEnv)
	gid := regexp.MustCompile(`(?m)^FAREGATE_GID=(\d+)$`).FindSubmatch(dotEnv)
	if uid == nil || gid == nil || string(uid[1]) == "0" {
		t.Fatalf(".env: want FAREGATE_UID and FAREGATE_GID of a user that is not root:\n%s", dotEnv)
	}
	wantUser := string(uid[1]) + ":" + string(gid[1])

	natsImage := "nats:" + natsServerVersion(t) + "-alpine"
	var natsSvcs, faregateSvcs []string
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		svc := project.Services[name]
		if svc.User != wantUser {
			t.Errorf("service %s runs as %q, want setup's %q", name, svc.User, wantUser)
		}
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind {
				t.Errorf("service %s: volume %s is %s; the deployment's data lives in deploy/state (bind mounts)", name, v.Target, v.Type)
				continue
			}
			if rel, err := filepath.Rel(dir, v.Source); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("service %s mounts %s from outside deploy/", name, v.Source)
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s at %s: %v", name, v.Source, v.Target, err)
			}
			rel, _ := filepath.Rel(dir, v.Source)
			if top := strings.Split(filepath.ToSlash(rel), "/")[0]; (top == "secrets" || top == "config") && !v.ReadOnly {
				t.Errorf("service %s mounts %s read-write", name, rel)
			}
		}
		switch {
		case strings.HasPrefix(svc.Image, "nats:"):
			natsSvcs = append(natsSvcs, name)
			if svc.Image != natsImage {
				t.Errorf("service %s: image %s, want %s (the nats-server go.mod requires)", name, svc.Image, natsImage)
			}
		case svc.Image == "faregate:local":
			faregateSvcs = append(faregateSvcs, name)
			if svc.Build == nil || svc.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("service %s: want build with deploy/Dockerfile, got %+v", name, svc.Build)
			} else if rel, _ := filepath.Rel(dir, svc.Build.Context); rel != ".." {
				t.Errorf("service %s: build context %s, want the repository root (..)", name, svc.Build.Context)
			}
		default:
			t.Errorf("service %s: image %q is neither nats nor faregate:local", name, svc.Image)
		}
	}
	if len(natsSvcs) != 3 {
		t.Fatalf("nats services %v: want a 3-node cluster", natsSvcs)
	}

	// The faregate services.
	caPool := readCertPool(t, filepath.Join(dir, "config", "ca.pem"))
	var clearingSeed string
	seenTerminals := map[string]bool{}
	natsClientHosts := map[string]bool{}
	for _, name := range faregateSvcs {
		svc := project.Services[name]
		env := map[string]string{}
		for k, v := range svc.Environment {
			if v == nil {
				t.Errorf("service %s: %s has no value", name, k)
				continue
			}
			env[k] = *v
		}
		line, err := parseFaregateLine([]string(svc.Command), env)
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		for _, dep := range natsSvcs {
			if svc.DependsOn[dep].Condition != types.ServiceConditionHealthy {
				t.Errorf("service %s does not wait for %s to be healthy", name, dep)
			}
		}
		// Every absolute path a flag names is provided by a mount.
		line.cmd.Flags().VisitAll(func(f *pflag.Flag) {
			for v := range strings.SplitSeq(line.value(f.Name), ",") {
				if !strings.HasPrefix(v, "/") {
					continue
				}
				host, ok := hostPath(svc, v)
				if !ok {
					t.Errorf("service %s: --%s %s is on no mount", name, f.Name, v)
					continue
				}
				if _, err := os.Stat(host); err != nil {
					t.Errorf("service %s: --%s %s: %v", name, f.Name, v, err)
				}
			}
		})
		// A relative --data would be under the image's working directory,
		// on no mount: the store would go with the container.
		if d := line.value("data"); !strings.HasPrefix(d, "/") {
			t.Errorf("service %s: --data %s is not on a mount", name, d)
		}
		for _, h := range natsURLHosts(t, line.value("nats")) {
			natsClientHosts[h] = true
		}
		if ca, ok := hostPath(svc, line.value("nats-ca")); !ok || readCertPool(t, ca) == nil {
			t.Errorf("service %s: no --nats-ca on a mount", name)
		}
		switch line.cmd.Name() {
		case "clearing":
			clearingSeed, _ = hostPath(svc, line.value("nats-seed"))
			cert, _ := hostPath(svc, line.value("http-tls-cert"))
			verifyCertFor(t, "settlement API", readLeafCert(t, cert), caPool, []string{name, "localhost"}, x509.ExtKeyUsageServerAuth)
			if _, err := tls.LoadX509KeyPair(cert, must(hostPath(svc, line.value("http-tls-key")))); err != nil {
				t.Errorf("service %s: settlement API key pair: %v", name, err)
			}
			reg, _ := hostPath(svc, line.value("registry"))
			r, err := clearing.LoadRegistry(reg)
			if err != nil {
				t.Errorf("service %s: %v", name, err)
				continue
			}
			var fromTSV []string
			for _, tt := range terms {
				fromTSV = append(fromTSV, tt.id+"/"+tt.operator+"/"+tt.stop)
			}
			var inReg []string
			for _, rt := range r.Terminals {
				inReg = append(inReg, rt.ID+"/"+rt.Operator+"/"+rt.Stop)
			}
			if !slices.Equal(fromTSV, inReg) {
				t.Errorf("registry terminals %v, want terminals.tsv's %v", inReg, fromTSV)
			}
		case "terminal":
			id := line.value("id")
			seenTerminals[id] = true
			i := slices.IndexFunc(terms, func(tt deployTerminal) bool { return tt.id == id })
			if i < 0 {
				t.Errorf("service %s: terminal %s is not in terminals.tsv", name, id)
				continue
			}
			if want := "terminal-" + id; name != want {
				t.Errorf("service %s runs terminal %s: name it %s", name, id, want)
			}
			if tt := terms[i]; line.value("operator") != tt.operator || line.value("stop") != tt.stop {
				t.Errorf("service %s: operator %s stop %s, terminals.tsv says %s %s", name, line.value("operator"), line.value("stop"), tt.operator, tt.stop)
			}
			if _, err := parseClearingKeys(strings.Split(line.value("clearing-key"), ",")); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
			key, _ := hostPath(svc, line.value("key"))
			if _, err := readTerminalKey(key); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
			if want := filepath.Join(dir, "secrets", "terminals", id, "terminal.key"); key != want {
				t.Errorf("service %s: key %s, want its own %s", name, key, want)
			}
			// In a directory of its mount, not at the mount's root: a copy
			// of a damaged store goes beside --data, and must outlive the
			// container as the outbox does.
			if data, _ := hostPath(svc, line.value("data")); data != filepath.Join(dir, "state", id, "outbox") {
				t.Errorf("service %s: outbox %s, want state/%s/outbox (its own, with room beside it on the mount)", name, data, id)
			}
		default:
			t.Errorf("service %s runs faregate %s; want clearing or terminal", name, line.cmd.Name())
		}
	}
	for _, tt := range terms {
		if !seenTerminals[tt.id] {
			t.Errorf("terminals.tsv's %s has no compose service terminal-%s", tt.id, tt.id)
		}
	}
	if clearingSeed == "" {
		t.Fatal("no clearing service with --nats-seed")
	}
	clearingUser, err := clearing.ReadNATSUserSeed(clearingSeed)
	if err != nil {
		t.Fatal(err)
	}
	clearingNKey, err := clearingUser.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	terminalNKeys := map[string]string{} // NKey -> terminal
	for _, tt := range terms {
		key, err := readTerminalKey(filepath.Join(dir, "secrets", "terminals", tt.id, "terminal.key"))
		if err != nil {
			t.Fatal(err)
		}
		ident, err := fare.NewNATSIdentity(key, tt.id)
		if err != nil {
			t.Fatal(err)
		}
		terminalNKeys[ident.PublicKey()] = tt.id
	}

	// The nats-servers, each loaded in its container's layout.
	routeHosts := map[string]bool{}
	clusterNames := map[string]bool{}
	for _, name := range natsSvcs {
		t.Run(name, func(t *testing.T) {
			svc := project.Services[name]
			if !slices.Contains(svc.Command, "--config") {
				t.Fatalf("command %v: want --config FILE", svc.Command)
			}
			confIn := svc.Command[slices.Index(svc.Command, "--config")+1]
			root := t.TempDir()
			for _, v := range svc.Volumes {
				at := filepath.Join(root, v.Target)
				if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(v.Source, at); err != nil {
					t.Fatal(err)
				}
			}
			if svc.WorkingDir == "" {
				t.Fatal("no working_dir: the configuration's relative certificate paths would depend on the image")
			}
			t.Chdir(filepath.Join(root, svc.WorkingDir))
			o, err := server.ProcessConfigFile(filepath.Join(root, confIn))
			if err != nil {
				t.Fatalf("%s: %v", confIn, err)
			}
			if o.ServerName != name {
				t.Errorf("server_name %q, want the service name %q", o.ServerName, name)
			}
			if o.TLSConfig == nil || o.AllowNonTLS {
				t.Error("clients are not required to use TLS")
			}
			if !o.JetStream {
				t.Error("JetStream is off")
			}
			if host, ok := hostPath(svc, o.StoreDir); !ok || strings.HasPrefix(o.StoreDir, "/etc/") {
				t.Errorf("JetStream store %s is on no writable mount", o.StoreDir)
			} else if _, err := os.Stat(filepath.Dir(host)); err != nil {
				t.Error(err)
			}
			clusterNames[o.Cluster.Name] = true
			if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
				t.Error("routes do not require TLS with a verified certificate on both ends")
			}
			if len(o.Routes) != 3 {
				t.Errorf("%d routes, want 3 (every node of the cluster)", len(o.Routes))
			}
			var hosts []string
			for _, r := range o.Routes {
				hosts = append(hosts, r.Hostname())
				routeHosts[r.Hostname()] = true
				if r.Port() != strconv.Itoa(o.Cluster.Port) {
					t.Errorf("route %s: port is not the cluster port %d", r, o.Cluster.Port)
				}
			}
			if slices.Sort(hosts); !slices.Equal(hosts, natsSvcs) {
				t.Errorf("routes to %v, want the nats services %v", hosts, natsSvcs)
			}
			for h := range natsClientHosts {
				if strings.HasPrefix(h, name+":") && h != name+":"+strconv.Itoa(o.Port) {
					t.Errorf("clients use %s, the server listens on port %d", h, o.Port)
				}
			}
			if hc := svc.HealthCheck; hc == nil || !slices.ContainsFunc(hc.Test, func(s string) bool {
				return strings.Contains(s, fmt.Sprintf("%s:%d/healthz", o.HTTPHost, o.HTTPPort))
			}) {
				t.Errorf("healthcheck %v does not ask the monitoring port %s:%d", hc, o.HTTPHost, o.HTTPPort)
			}
			// Users: exactly clearing (full access) and the registry's terminals.
			if len(o.Users) > 0 || o.NoAuthUser != "" || o.Username != "" || o.Authorization != "" {
				t.Error("the server admits users other than NKeys")
			}
			if o.MaxPayload != int32(clearing.MaxPayload) {
				t.Errorf("max_payload %d, want %d", o.MaxPayload, clearing.MaxPayload)
			}
			admitted := map[string]bool{}
			for _, u := range o.Nkeys {
				admitted[u.Nkey] = true
				switch id, isTerminal := terminalNKeys[u.Nkey]; {
				case u.Nkey == clearingNKey:
					if u.Permissions != nil {
						t.Error("clearing's user has restricted permissions")
					}
				case !isTerminal:
					t.Errorf("user %s is neither clearing nor a terminal of terminals.tsv", u.Nkey)
				case u.Permissions == nil || u.Permissions.Publish == nil || !slices.ContainsFunc(u.Permissions.Publish.Allow, func(s string) bool {
					return strings.HasPrefix(s, "faregate.events.") && strings.HasSuffix(s, "."+id)
				}):
					t.Errorf("terminal %s's user may not publish its events, or may publish anything", id)
				case slices.Contains(u.Permissions.Publish.Allow, ">"):
					t.Errorf("terminal %s's user may publish anywhere", id)
				}
			}
			if !admitted[clearingNKey] {
				t.Error("clearing's user (its --nats-seed) is not admitted")
			}
			for nk, id := range terminalNKeys {
				if !admitted[nk] {
					t.Errorf("terminal %s (user %s) is not admitted", id, nk)
				}
			}
			// The certificate serves clients and routes under every name they use.
			if len(o.TLSConfig.Certificates) == 0 || len(o.Cluster.TLSConfig.Certificates) == 0 {
				t.Fatal("no server certificate")
			}
			var names []string
			for h := range natsClientHosts {
				names = append(names, strings.Split(h, ":")[0])
			}
			leaf, err := x509.ParseCertificate(o.TLSConfig.Certificates[0].Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			verifyCertFor(t, "client TLS", leaf, caPool, names, x509.ExtKeyUsageServerAuth)
			routeLeaf, err := x509.ParseCertificate(o.Cluster.TLSConfig.Certificates[0].Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			verifyCertFor(t, "route TLS", routeLeaf, o.Cluster.TLSConfig.ClientCAs, natsSvcs, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
		})
	}
	if len(clusterNames) != 1 {
		t.Errorf("cluster names %v: want one cluster", slices.Collect(maps.Keys(clusterNames)))
	}
	for h := range natsClientHosts {
		if !slices.Contains(natsSvcs, strings.Split(h, ":")[0]) {
			t.Errorf("clients connect to %s, which is no nats service", h)
		}
	}
}

// must returns v, ignoring ok (the caller reports a missing mount elsewhere).
func must(v string, _ bool) string { return v }

// systemdOptions reads a unit file with go-systemd's parser into section ->
// name -> values (in order).
func systemdOptions(t *testing.T, file string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	m := map[string]map[string][]string{}
	for _, o := range opts {
		if m[o.Section] == nil {
			m[o.Section] = map[string][]string{}
		}
		m[o.Section][o.Name] = append(m[o.Section][o.Name], o.Value)
	}
	return m
}

// readEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile= does for
// the simple cases the example uses (no quotes, no continuation).
func readEnvFile(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.ContainsAny(v, `"'\`) {
			t.Fatalf("%s: line %q: want KEY=VALUE without quotes", file, l)
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// TestDeploySystemdTerminal parses deploy/systemd's terminal unit and socket
// with go-systemd's unit parser and checks the hardening an operator expects,
// and that its command line, with the example environment file, parses with
// the real `faregate terminal` command: --data is a directory inside the
// unit's state directory and --key its credential.
func TestDeploySystemdTerminal(t *testing.T) {
	dir := filepath.Join(deployDir(t), "systemd")
	svc := systemdOptions(t, filepath.Join(dir, "faregate-terminal.service"))
	sock := systemdOptions(t, filepath.Join(dir, "faregate-terminal.socket"))
	s := svc["Service"]
	if s == nil {
		t.Fatal("no [Service] section")
	}
	one := func(name string) string {
		if len(s[name]) != 1 {
			t.Errorf("[Service] %s= is set %d times, want once", name, len(s[name]))
			return ""
		}
		return s[name][0]
	}
	for name, want := range map[string]string{
		"DynamicUser":              "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
		"PrivateDevices":           "yes",
		"NoNewPrivileges":          "yes",
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": strconv.Itoa(exitUsage),
		"CapabilityBoundingSet":    "",
		"StateDirectory":           "faregate-terminal",
		"EnvironmentFile":          "/etc/faregate/terminal.env",
		"StandardInput":            "socket",
		"UMask":                    "0077",
	} {
		if got := one(name); got != want {
			t.Errorf("[Service] %s=%q, want %q", name, got, want)
		}
	}
	if !slices.Contains(svc["Unit"]["Requires"], "faregate-terminal.socket") {
		t.Error("the service reads taps from faregate-terminal.socket but does not require it")
	}
	if fifo := sock["Socket"]["ListenFIFO"]; len(fifo) != 1 || !strings.HasPrefix(fifo[0], "/run/") {
		t.Errorf("socket ListenFIFO=%v, want one FIFO under /run", fifo)
	}
	cred, credFile, _ := strings.Cut(one("LoadCredential"), ":")
	if cred == "" || !filepath.IsAbs(credFile) {
		t.Errorf("LoadCredential=%s:%s: want NAME:/absolute/file", cred, credFile)
	}

	// ExecStart, with the specifiers it uses resolved as systemd does for a
	// system unit.
	args := strings.Fields(one("ExecStart"))
	if len(args) < 2 || args[0] != "/usr/local/bin/faregate" {
		t.Fatalf("ExecStart=%v: want /usr/local/bin/faregate ...", args)
	}
	specifiers := strings.NewReplacer("%S", "/var/lib", "%d", "/run/credentials/faregate-terminal.service", "%%", "%")
	for i, a := range args {
		if strings.Contains(strings.NewReplacer("%S", "", "%d", "", "%%", "").Replace(a), "%") {
			t.Errorf("ExecStart argument %q: a specifier this test does not resolve", a)
		}
		args[i] = specifiers.Replace(a)
	}
	if !slices.Contains(svc["Install"]["WantedBy"], "multi-user.target") {
		t.Error("the service is not wanted by multi-user.target: it would not start at boot")
	}
	env := readEnvFile(t, filepath.Join(dir, "terminal.env.example"))
	line, err := parseFaregateLine(args[1:], env)
	if err != nil {
		t.Fatal(err)
	}
	if line.cmd.CommandPath() != "faregate terminal" {
		t.Errorf("ExecStart runs %s, want faregate terminal", line.cmd.CommandPath())
	}
	// Inside the state directory, not the directory itself: the copy of a
	// store a crash left goes beside --data, and /var/lib is not the
	// service's to write (an outside test: every gate would have refused
	// to start after a power cut).
	if want := "/var/lib/" + one("StateDirectory") + "/outbox"; line.value("data") != want {
		t.Errorf("--data %s, want %s, inside the state directory", line.value("data"), want)
	}
	if want := "/run/credentials/faregate-terminal.service/" + cred; line.value("key") != want {
		t.Errorf("--key %s, want the credential %s", line.value("key"), want)
	}
	if line.value("nats-ca") == "" || !strings.HasPrefix(line.value("nats"), "tls://") {
		t.Errorf("the example connects to %s with CA %q: want tls:// and --nats-ca", line.value("nats"), line.value("nats-ca"))
	}
}

// dockerInstruction is one instruction of a Dockerfile.
type dockerInstruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

// parseDockerfile splits a Dockerfile into instructions: comments and blank
// lines dropped, backslash continuations joined (comment lines inside a
// continuation skipped, as BuildKit does), heredocs not used.
func parseDockerfile(t *testing.T, file string) ([]dockerInstruction, map[string]int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ins []dockerInstruction
	stages := map[string]int{}
	stage := -1
	var cur strings.Builder
	for l := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.Contains(trimmed, "<<") && strings.HasPrefix(strings.ToUpper(trimmed), "RUN") {
			t.Fatalf("%s: heredocs are not parsed by this test: %q", file, l)
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		full := cur.String()
		cur.Reset()
		c, args, _ := strings.Cut(full, " ")
		c = strings.ToUpper(c)
		if c == "FROM" {
			stage++
			f := strings.Fields(args)
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = stage
			}
		}
		ins = append(ins, dockerInstruction{c, strings.TrimSpace(args), stage})
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: ends inside a continuation", file)
	}
	return ins, stages
}

// makeVar is the value of a `NAME := ...` variable of the Makefile, with
// backslash continuations joined.
func makeVar(t *testing.T, makefile, name string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` :=((?:[^\n]*\\\n)*[^\n]*)`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatalf("Makefile has no %s", name)
	}
	return strings.Fields(strings.ReplaceAll(m[1], "\\\n", " "))
}

// TestDeployDockerfile checks deploy/Dockerfile: multi-stage, the build
// stage installs the Debian packages of the Makefile's DEBS that the cgo dlib
// build needs and builds with GOEXPERIMENT=simd, the final stage copies only the
// binary and the face models the Makefile checksums from it, installs dlib's
// landmark model, points FAREGATE_MODELS at the models and runs as a non-root
// user with faregate as its entrypoint; its ignore file keeps the
// deployment's keys out of the build context and the models in.
func TestDeployDockerfile(t *testing.T) {
	dir := deployDir(t)
	ins, stages := parseDockerfile(t, filepath.Join(dir, "Dockerfile"))
	mk, err := os.ReadFile(filepath.Join(dir, "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for _, in := range ins {
		last = max(last, in.stage)
	}
	if last < 1 {
		t.Fatalf("%d stage(s), want a build stage and a runtime stage", last+1)
	}
	build, ok := stages["build"]
	if !ok || build == last {
		t.Fatalf("stages %v: want a build stage named build before the final one", stages)
	}
	in := func(stage int, cmd string) []string {
		var out []string
		for _, i := range ins {
			if i.stage == stage && i.cmd == cmd {
				out = append(out, i.args)
			}
		}
		return out
	}
	buildRun := strings.Join(in(build, "RUN"), "\n")
	// What the cgo build over dlib needs of the Makefile's DEBS: the -dev
	// packages and the C toolchain (the rest, such as the browser of the
	// dashboard's screenshot test, is for tests and stays out of the image).
	var cgoDebs []string
	for _, p := range makeVar(t, string(mk), "DEBS") {
		if strings.HasSuffix(p, "-dev") || p == "pkg-config" || p == "gcc" || p == "g++" {
			cgoDebs = append(cgoDebs, p)
		}
	}
	if !slices.Contains(cgoDebs, "libdlib-dev") {
		t.Fatalf("Makefile DEBS %v: no libdlib-dev", cgoDebs)
	}
	for _, p := range cgoDebs {
		if !regexp.MustCompile(`apt-get install[^\n]*\s` + regexp.QuoteMeta(p) + `(\s|$)`).MatchString(buildRun) {
			t.Errorf("the build stage does not apt-get install %s (Makefile DEBS)", p)
		}
	}
	if !slices.ContainsFunc(in(build, "ENV"), func(s string) bool { return strings.Contains(s, "GOEXPERIMENT=simd") }) {
		t.Error("the build stage does not set GOEXPERIMENT=simd")
	}
	if !strings.Contains(buildRun, "go build") || !strings.Contains(buildRun, "./cmd/faregate") {
		t.Error("the build stage does not go build ./cmd/faregate")
	}
	if !strings.Contains(buildRun, "make models") {
		t.Error("the build stage does not check the models with make models")
	}
	finalRun := strings.Join(in(last, "RUN"), "\n")
	if !strings.Contains(finalRun, "libdlib-data") {
		t.Error("the final stage does not install libdlib-data (the landmark model)")
	}
	for _, c := range in(last, "COPY") {
		if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(c); m != nil {
			if s, ok := stages[m[1]]; !ok || s >= last {
				t.Errorf("COPY %s: no earlier stage %s", c, m[1])
			}
		}
	}
	var modelsDir string
	for _, e := range in(last, "ENV") {
		if m := regexp.MustCompile(biometrics.ModelsEnv + `=(\S+)`).FindStringSubmatch(e); m != nil {
			modelsDir = m[1]
		}
	}
	if modelsDir == "" || !slices.ContainsFunc(in(last, "COPY"), func(c string) bool {
		return strings.HasSuffix(strings.TrimSuffix(c, "/"), " "+strings.TrimSuffix(modelsDir, "/"))
	}) {
		t.Errorf("%s=%q is not where the final stage copies the models", biometrics.ModelsEnv, modelsDir)
	}
	for _, e := range makeVar(t, string(mk), "MODEL_SHA256") {
		_, file, _ := strings.Cut(e, "=")
		if !strings.Contains(buildRun, file) {
			t.Errorf("the build stage does not install the model %s", file)
		}
	}
	users := in(last, "USER")
	if len(users) == 0 {
		t.Fatal("the final stage has no USER: it would run as root")
	}
	if u, _, _ := strings.Cut(users[len(users)-1], ":"); u == "root" || u == "0" {
		t.Errorf("the final stage runs as %s", users[len(users)-1])
	}
	// The services run as setup's user, which is not the image's unless
	// setup ran as root: the directory their mounts sit in must let any
	// user through (an outside test's clearing, as uid 1000 under a 0750
	// /var/lib/faregate, could not reach its own mounted data).
	for _, m := range regexp.MustCompile(`install -d[^\n&]*-m (0?[0-7]{3}) (/var/lib/faregate)\b`).FindAllStringSubmatch(finalRun, -1) {
		if mode, _ := strconv.ParseUint(m[1], 8, 32); mode&0o001 == 0 {
			t.Errorf("the final stage makes %s mode %s: the services' users (setup's, not the image's) could not reach their mounts under it", m[2], m[1])
		}
	}
	if ep := in(last, "ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/usr/local/bin/faregate"]` {
		t.Errorf("ENTRYPOINT %v, want [\"/usr/local/bin/faregate\"]", ep)
	}
	ign, err := os.ReadFile(filepath.Join(dir, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := strings.Fields(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(string(ign), ""))
	for _, p := range []string{"deploy/secrets/", "deploy/config/", "deploy/state/", "deploy/.env", "**/*.key", "**/*.nk", "**/*-key.pem", ".git"} {
		if !slices.Contains(ignored, p) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", p)
		}
	}
	for _, p := range ignored {
		if strings.HasPrefix(strings.TrimPrefix(p, "/"), "models") {
			t.Errorf("Dockerfile.dockerignore excludes %s: the image's models come from models/", p)
		}
	}
}
