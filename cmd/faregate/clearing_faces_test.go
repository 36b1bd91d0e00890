package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestFacesCommandsReachTheGate: the faces desk enrols a subject with
// `faregate clearing faces enrol` through a running clearing's API; the
// gate's gallery (openFaceGallery, beside the gate's own store in its data
// dir) matches the subject; `faces show` names the gate as holding it;
// `faces erase` takes it out of the gate's gallery; refusals name what is
// wrong, and a token of another role is refused.
func TestFacesCommandsReachTheGate(t *testing.T) {
	const model = "test-pipeline/v1"
	c := startLiveCity(t, []gateSpec{
		{"metro-s01-g1", "metro", "metro-s01", "metro", "metro-L1"},
		{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"},
	}, func(cfg *clearing.Config) {
		cfg.FaceKey, cfg.FaceHeadEvery = []byte(strings.Repeat("k", 32)), 200*time.Millisecond
		cfg.FaceModels = []string{model} // synthetic faces, not dlib's
	})
	tokens, err := clearing.LoadTokenStore(filepath.Join(c.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(c.cl, nil, clearing.WithTokens(tokens)))
	defer srv.Close()
	tokenFile := func(role clearing.Role, operator, name string) string {
		tok, err := tokens.Issue(role, operator, name)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(c.dir, name+".token")
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	desk, metro := tokenFile(clearing.RoleFaces, "", "faces-desk"), tokenFile(clearing.RoleOperator, "metro", "metro")

	// The gate's gallery lives in the gate's data dir, beside its store
	// (the gate runs on).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gateDir := filepath.Join(c.dir, "metro-s01-g1")
	feed, stop, err := openFaceGallery(ctx, faceGalleryConfig{ID: "metro-s01-g1", Key: c.keys["metro-s01-g1"], DataDir: gateDir,
		NATSURL: c.cl.NATSURL(), ClearingKeys: []ed25519.PublicKey{c.cl.ConfirmationKey()}, ModelID: model, MaxAge: time.Minute, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("face gallery: %v", err)
		}
	}()
	c.waitFor("the gate's first face head", func() bool { return feed.Status().Fresh })

	rng := rand.New(rand.NewPCG(5, 5))
	var base [128]float32
	for i := range base {
		base[i] = float32(rng.Float64()*0.2 - 0.1)
	}
	sample := func() [128]float32 {
		v := base
		for i := range v {
			v[i] += float32(rng.Float64()*0.01 - 0.005)
		}
		return v
	}
	enrol := func(token string, extra ...string) (string, error) {
		args := []string{"faces", "enrol", "--api", srv.URL, "--token-file", token, "--model", model, "--face-only", "--stops", "metro-s01",
			"--consent-by", "the subject", "--consent-at", time.Now().Add(-time.Minute).Format(time.RFC3339), "--purpose", "face-only travel"}
		for range 3 {
			args = append(args, "--descriptor", eval.EncodeDescriptor(sample()))
		}
		out, _, err := runClearingCmd(t, "", append(args, extra...)...)
		return out, err
	}
	if _, err := enrol(metro, "--subject", "rider-4f2a"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("an operator's token enrolled: %v", err)
	}
	if _, err := enrol(desk, "--subject", "Jane Doe"); err == nil || !strings.Contains(err.Error(), "bad subject id") {
		t.Fatalf("a name as subject id: %v", err)
	}
	if _, err := enrol(desk, "--subject", "rider-4f2a", "--lines", "tram-9"); err == nil || !strings.Contains(err.Error(), `unknown line "tram-9"`) {
		t.Fatalf("an unknown line: %v", err)
	}
	out, err := enrol(desk, "--subject", "rider-4f2a", "--card-token", "-")
	if err == nil {
		t.Fatalf("an empty card token from stdin: %s", out)
	}
	// A token no card reader sends (here a zero-width space inside):
	// its key would be no tap's (an outside review).
	if out, err := enrol(desk, "--subject", "rider-4f2a", "--card-token", "abc\u200bdef"); err == nil || exitCode(err) != exitUsage ||
		!strings.Contains(err.Error(), "--card-token: the token has a space, control or invisible character") {
		t.Fatalf("a card token with an invisible character: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	out, err = enrol(desk, "--subject", "rider-4f2a")
	if err != nil {
		t.Fatal(err)
	}
	var s clearing.FaceSubject
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Subject != "rider-4f2a" || s.EnrolledBy != "faces-desk" || s.Consent.LegalBasis != "GDPR Art. 9(2)(a) explicit consent" {
		t.Fatalf("enrolled: %+v %v\n%s", s, err, out)
	}
	c.waitFor("the subject at the gate", func() bool {
		d, err := feed.Identify(sample(), gallery.DefaultPolicy())
		return err == nil && d.Accepted && d.Subject == "rider-4f2a"
	})
	out, _, err = runClearingCmd(t, "", "faces", "show", "--api", srv.URL, "--token-file", desk, "--subject", "rider-4f2a")
	if err != nil || !strings.Contains(out, `"terminal": "metro-s01-g1"`) || !strings.Contains(out, `"held": true`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	// A card's holder: the card key (its deny-list hash) is taken and shown
	// in 0x hex, as every hash; the API's own form (bare digits) is taken too.
	cardKey := fare.DenyKey(fare.Card, "card-77") // 0x hex
	riderBase := base
	for i := range base { // another person: one face is one subject
		base[i] = float32(rng.Float64()*0.2 - 0.1)
	}
	for i, given := range []string{cardKey, strings.TrimPrefix(cardKey, "0x")} {
		args := []string{"--subject", "holder-9", "--card-key", given}
		if i > 0 { // the same person again, under the id erased below, consenting again since
			args = append(args, "--same-person-as-erased", "--consent-at", time.Now().Format(time.RFC3339Nano))
		}
		out, err = enrol(desk, args...)
		if err != nil || !strings.Contains(out, `"card_key": "`+cardKey+`"`) {
			t.Fatalf("enrol a card holder with --card-key %s: %v\n%s", given, err, out)
		}
		out, _, err = runClearingCmd(t, "", "faces", "show", "--api", srv.URL, "--token-file", desk, "--subject", "holder-9")
		if err != nil || !strings.Contains(out, `"card_key": "`+cardKey+`"`) {
			t.Fatalf("show a card holder: %v\n%s", err, out)
		}
		out, _, err = runClearingCmd(t, "", "faces", "list", "--api", srv.URL, "--token-file", desk)
		if err != nil || !strings.Contains(out, `"rider-4f2a"`) || !strings.Contains(out, `"card_key": "`+cardKey+`"`) {
			t.Fatalf("list: %v\n%s", err, out)
		}
		if _, _, err = runClearingCmd(t, "", "faces", "erase", "--api", srv.URL, "--token-file", desk, "--subject", "holder-9"); err != nil {
			t.Fatal(err)
		}
		c.waitFor("the card holder erased at the gate", func() bool { return !feed.Has("holder-9") })
	}
	// The same face as rider-4f2a under another subject is refused, naming it.
	base = riderBase
	if _, err := enrol(desk, "--subject", "rider-twin"); err == nil || !strings.Contains(err.Error(), `enrolled subject "rider-4f2a"`) {
		t.Fatalf("rider-4f2a's face under a second subject: %v", err)
	}
	out, _, err = runClearingCmd(t, "", "faces", "erase", "--api", srv.URL, "--token-file", desk, "--subject", "rider-4f2a", "--reason", "consent withdrawn")
	if err != nil || !strings.Contains(out, `"bucket_erased": true`) {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	c.waitFor("the subject erased at the gate", func() bool { return !feed.Has("rider-4f2a") })
	if _, err := feed.Identify(sample(), gallery.DefaultPolicy()); !errors.Is(err, gallery.ErrEmpty) {
		t.Fatalf("identify after erasure: %v", err)
	}
	out, _, err = runClearingCmd(t, "", "faces", "list", "--api", srv.URL, "--token-file", desk)
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list after erasure: %v\n%s", err, out)
	}
	// The gate's own store opens beside the gallery's copy.
	c.stopGate("metro-s01-g1")
	c.startGate("metro-s01-g1")
	if _, err := os.Stat(filepath.Join(gateDir, "face-gallery")); err != nil {
		t.Fatal(err)
	}
}

// TestFaceKeyWarnings: the template key is warned of when others may read
// it, and when it sits inside clearing's data dir (through a link too),
// where a backup or copy of the data dir carries the templates and their
// key together (an outside review saw it accepted there unsaid); a key
// kept outside, mode 0600, is not warned of.
func TestFaceKeyWarnings(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(data, filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, file string
		mode       os.FileMode
		want       []string
	}{
		{"outside, 0600", filepath.Join(tmp, "face.key"), 0o600, nil},
		{"outside, readable by others", filepath.Join(tmp, "open.key"), 0o644, []string{"can be read by others than its owner"}},
		{"inside the data dir", filepath.Join(data, "face.key"), 0o600, []string{"inside clearing's data dir"}},
		{"inside, through a link", filepath.Join(tmp, "link", "linked.key"), 0o600, []string{"inside clearing's data dir"}},
		{"inside and readable", filepath.Join(data, "open.key"), 0o640, []string{"can be read by others", "inside clearing's data dir"}},
	} {
		if err := os.WriteFile(tc.file, []byte(key), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tc.file, tc.mode); err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		k, err := loadFaceKey(tc.file, data, 0, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || len(k) != 32 {
			t.Fatalf("%s: key %d bytes, %v", tc.name, len(k), err)
		}
		warnings := strings.Count(logs.String(), "level=WARN")
		if warnings != len(tc.want) {
			t.Errorf("%s: %d warnings, want %d:\n%s", tc.name, warnings, len(tc.want), logs.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("%s: no warning saying %q:\n%s", tc.name, w, logs.String())
			}
		}
	}
}

// TestDeskTokenReadableByOthers: a desk's token file others can read is
// warned of when a desk command reads it (an outside review: README's
// "> desk.token" left it 0644 without a word); one of mode 0600 is not.
func TestDeskTokenReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o640, true}, {0o600, false}} {
		file := filepath.Join(dir, "desk.token")
		if err := os.WriteFile(file, []byte("fgt_x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, tc.mode); err != nil {
			t.Fatal(err)
		}
		// No clearing answers: the warning comes before the call.
		_, errOut, _ := runClearingCmd(t, "", "faces", "list", "--token-file", file, "--api", "http://127.0.0.1:1")
		if got := strings.Contains(errOut, "--token-file "+file+" can be read by others than its owner (mode "); got != tc.warn {
			t.Errorf("mode %#o: warned %v, want %v (stderr %q)", tc.mode, got, tc.warn, errOut)
		}
	}
}

// TestDeskAPIBaseURL: a desk command's --api is a base URL: one with a
// query (the endpoint's path was appended after it, and the query's key
// printed in the error) is refused, naming no secret.
func TestDeskAPIBaseURL(t *testing.T) {
	file := filepath.Join(t.TempDir(), "desk.token")
	if err := os.WriteFile(file, []byte("fgt_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, api := range []string{"http://u:pw5ecret@127.0.0.1:1/?k=APIKEYquery1", "127.0.0.1:8080", "http://127.0.0.1:1/#frag", "http://127.0.0.1:1/?", "http://127.0.0.1:1/#"} {
		_, _, err := runClearingCmd(t, "", "faces", "list", "--token-file", file, "--api", api)
		if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "want the settlement API's base URL") ||
			strings.Contains(err.Error(), "APIKEYquery1") || strings.Contains(err.Error(), "pw5ecret") {
			t.Errorf("--api %s: %v (exit %d), want a usage error naming no secret", api, err, exitCode(err))
		}
	}
}

// TestDeskAPIErrorRedacted: a desk command that cannot reach the API names
// it with a user-only token or a key in its base path hidden (the HTTP
// client's own error hides a password only).
func TestDeskAPIErrorRedacted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "desk.token")
	if err := os.WriteFile(file, []byte("fgt_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, api := range []string{"http://TOKENuserinfo99@127.0.0.1:1", "http://127.0.0.1:1/prefix/0123456789abcdefPATHKEY"} {
		_, _, err := runClearingCmd(t, "", "faces", "list", "--token-file", file, "--api", api)
		if err == nil || !strings.Contains(err.Error(), "settlement API") || strings.Contains(err.Error(), "TOKENuserinfo99") || strings.Contains(err.Error(), "PATHKEY") {
			t.Errorf("--api %s: %v, want the unreachable API named, no secret", api, err)
		}
	}
}
