package clearing

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/faregate/faregate/fare"
)

// APITokenFile is the settlement API's token file in clearing's data dir.
const APITokenFile = "api-tokens.json"

// TokenPrefix starts every settlement API token, so a leaked one is easy to
// recognise (and to grep for).
const TokenPrefix = "fgt_"

// tokenBytes is how much randomness a token carries.
const tokenBytes = 32

// maxTokenNameLen bounds a token's name.
const maxTokenNameLen = 64

// Role is what a settlement API token may see.
type Role string

// Roles: an operator sees its own operator's data (and the batches, which
// are public on chain anyway); an auditor sees everything, read-only; the
// concessions desk enrols riders into rider categories and revokes
// enrolments, and sees nothing else (operators never see riders'
// enrolments); the payments desk takes a rider's payment of a debt and
// sees that rider's payments, nothing else; the faces desk enrols face
// subjects (templates, consent, scope) and erases them, and sees their
// metadata (never descriptors), nothing else; the fare desk schedules fare
// feed versions.
const (
	RoleOperator    Role = "operator"
	RoleAuditor     Role = "auditor"
	RoleConcessions Role = "concessions"
	RolePayments    Role = "payments"
	RoleFaces       Role = "faces"
	// RoleFares is the fare desk: it schedules new versions of the fare
	// feed (POST /v1/feeds) and sees the schedule, nothing else.
	RoleFares Role = "fares"
	// RoleMetrics is a metrics scraper (Prometheus): it reads /metrics
	// (and the batches, public on chain), nothing else; an auditor's
	// token reads every event's signed bytes, card tokens included.
	RoleMetrics Role = "metrics"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleOperator, RoleAuditor, RoleConcessions, RolePayments, RoleFaces, RoleFares, RoleMetrics:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want %q, %q, %q, %q, %q, %q or %q", s, RoleOperator, RoleAuditor, RoleConcessions, RolePayments, RoleFaces, RoleFares, RoleMetrics)
}

// ErrBadToken is returned by TokenStore.Authenticate for a token that is
// malformed, unknown or revoked.
var ErrBadToken = errors.New("invalid or revoked API token")

// TokenInfo is one issued token as the token file keeps it: who it is for
// and the sha256 of the token, never the token itself.
type TokenInfo struct {
	// Name identifies the token (unique; what revoke takes).
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Operator is the operator id an operator token is bound to.
	Operator string `json:"operator,omitempty"`
	// Created is the issue time (RFC 3339, UTC).
	Created time.Time `json:"created"`
	// SHA256 is the hash of the token (0x hex).
	SHA256 string `json:"sha256"`
	// Expires is when the token stops being accepted (RFC 3339, UTC);
	// zero: never.
	Expires time.Time `json:"expires,omitzero"`
}

// Principal is the party an authenticated request acts for.
type Principal struct {
	Name     string
	Role     Role
	Operator string // set for RoleOperator
}

// Sees reports whether p may see data of operator op: an auditor sees every
// operator's, an operator only its own.
func (p Principal) Sees(op string) bool {
	return p.Role == RoleAuditor || (p.Role == RoleOperator && p.Operator == op)
}

type tokenFile struct {
	Tokens []TokenInfo `json:"tokens"`
}

// TokenStore is the settlement API's token file: issued per party by `faregate
// clearing token issue`, stored as hashes (mode 0600). A running API re-reads
// the file whenever it changes, so tokens can be issued and revoked while
// clearing runs. Writers (Issue, Revoke) take a lock file next to it, not
// the clearing store's lock, so the admin command works beside a running
// clearing house.
type TokenStore struct {
	path string

	mu      sync.Mutex
	stat    fs.FileInfo          // of the file last read; nil: none read
	byHash  map[string]TokenInfo // sha256 (0x hex) -> token
	loadErr error                // the last read failed: refuse every token
	log     *slog.Logger         // set by the API: reloads are logged
}

// LoadTokenStore opens the token file at path. A missing file is no error:
// it holds no tokens until one is issued (then it is read on the next
// request). A malformed file is.
func LoadTokenStore(path string) (*TokenStore, error) {
	ts := newTokenStore(path)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.refreshLocked()
	if ts.loadErr != nil {
		return nil, ts.loadErr
	}
	return ts, nil
}

func newTokenStore(path string) *TokenStore {
	return &TokenStore{path: path, byHash: map[string]TokenInfo{}}
}

// Path is the token file.
func (ts *TokenStore) Path() string { return ts.path }

// Authenticate returns the party a bearer token was issued to, re-reading
// the file first if it changed. It returns an error wrapping ErrBadToken for
// a malformed, unknown or revoked token, and another error when the file
// cannot be read (then no token is accepted until it is fixed).
func (ts *TokenStore) Authenticate(token string) (Principal, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.refreshLocked()
	if ts.loadErr != nil {
		return Principal{}, ts.loadErr
	}
	if !strings.HasPrefix(token, TokenPrefix) {
		return Principal{}, fmt.Errorf("%w: not a faregate API token (they start with %s)", ErrBadToken, TokenPrefix)
	}
	// The lookup is by the token's hash: timing reveals nothing about the
	// stored hashes' preimages.
	t, ok := ts.byHash[hashToken(token)]
	if !ok {
		return Principal{}, ErrBadToken
	}
	if !t.Expires.IsZero() && !time.Now().Before(t.Expires) {
		return Principal{}, fmt.Errorf("%w: token %q expired at %s (issue a new one: faregate clearing token issue)", ErrBadToken, t.Name, t.Expires.Format(time.RFC3339))
	}
	return Principal{Name: t.Name, Role: t.Role, Operator: t.Operator}, nil
}

// Len is the number of valid tokens as of the last read.
func (ts *TokenStore) Len() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.refreshLocked()
	return len(ts.byHash)
}

// refreshLocked re-reads the file if it is not the one last read.
func (ts *TokenStore) refreshLocked() {
	st, err := os.Stat(ts.path)
	if errors.Is(err, fs.ErrNotExist) {
		if ts.stat != nil || ts.loadErr != nil || len(ts.byHash) > 0 {
			ts.setLocked(map[string]TokenInfo{}, nil, nil)
		}
		return
	}
	if err != nil {
		ts.setLocked(map[string]TokenInfo{}, nil, fmt.Errorf("API token file: %w", err))
		return
	}
	if ts.stat != nil && os.SameFile(ts.stat, st) && st.ModTime().Equal(ts.stat.ModTime()) && st.Size() == ts.stat.Size() {
		return
	}
	f, err := readTokenFile(ts.path)
	if err != nil {
		// Fail closed: a revoke that left a broken file must not leave the
		// revoked token valid.
		ts.setLocked(map[string]TokenInfo{}, st, err)
		return
	}
	m := make(map[string]TokenInfo, len(f.Tokens))
	for _, t := range f.Tokens {
		m[t.SHA256] = t
	}
	ts.setLocked(m, st, nil)
}

// setLocked installs what a read found and logs it, once per change (a
// read error that persists is logged once).
func (ts *TokenStore) setLocked(m map[string]TokenInfo, st fs.FileInfo, err error) {
	sameErr := err != nil && ts.loadErr != nil && err.Error() == ts.loadErr.Error()
	ts.byHash, ts.stat, ts.loadErr = m, st, err
	if sameErr || ts.log == nil {
		return
	}
	if err != nil {
		ts.log.Error("settlement API refuses every token until the token file is fixed", "file", ts.path, "err", err)
		return
	}
	ts.log.Info("settlement API tokens (re)loaded", "file", ts.path, "tokens", len(m))
}

// readTokenFile reads and validates the file; a missing file holds nothing.
func readTokenFile(path string) (*tokenFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &tokenFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("API token file: %w", err)
	}
	var f tokenFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("API token file %s: %w", path, err)
	}
	names := make(map[string]bool, len(f.Tokens))
	hashes := make(map[string]bool, len(f.Tokens))
	for i, t := range f.Tokens {
		if err := validateTokenInfo(t); err != nil {
			return nil, fmt.Errorf("API token file %s: token %d: %w", path, i, err)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("API token file %s: token name %q listed twice", path, t.Name)
		}
		if hashes[t.SHA256] {
			return nil, fmt.Errorf("API token file %s: token %q: hash listed twice", path, t.Name)
		}
		names[t.Name], hashes[t.SHA256] = true, true
	}
	return &f, nil
}

func validateTokenInfo(t TokenInfo) error {
	if err := ValidateTokenName(t.Name); err != nil {
		return err
	}
	if err := validateGrant(t.Role, t.Operator); err != nil {
		return fmt.Errorf("token %q: %w", t.Name, err)
	}
	h, err := hex.DecodeString(strings.TrimPrefix(t.SHA256, "0x"))
	if err != nil || len(h) != sha256.Size || !strings.HasPrefix(t.SHA256, "0x") || t.SHA256 != strings.ToLower(t.SHA256) {
		return fmt.Errorf("token %q: sha256 %q: want 0x and 64 lower-case hex digits", t.Name, t.SHA256)
	}
	if !t.Expires.IsZero() && !t.Expires.After(t.Created) {
		return fmt.Errorf("token %q: expires %s, not after it was created (%s)", t.Name, t.Expires.Format(time.RFC3339), t.Created.Format(time.RFC3339))
	}
	return nil
}

// ValidateTokenName checks a token's name: 1 to 64 bytes of [A-Za-z0-9._-].
func ValidateTokenName(name string) error {
	if name == "" {
		return errors.New("token name is empty")
	}
	if len(name) > maxTokenNameLen {
		return fmt.Errorf("token name %q: %d bytes, longer than %d", name, len(name), maxTokenNameLen)
	}
	for i, c := range name { // runes, so the error shows the character typed
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("token name %q: character %q at byte %d not in [A-Za-z0-9._-]", name, c, i)
		}
	}
	return nil
}

// validateGrant checks a role and the operator it is bound to.
func validateGrant(role Role, operator string) error {
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	switch role {
	case RoleOperator:
		if operator == "" {
			return errors.New("role operator needs an operator id")
		}
		if err := fare.ValidateID(operator); err != nil {
			return fmt.Errorf("operator id %q: %w", operator, err)
		}
	case RoleAuditor, RoleConcessions, RolePayments, RoleFaces, RoleFares, RoleMetrics:
		if operator != "" {
			return fmt.Errorf("role %s is bound to no operator: it takes no operator id (got %q)", role, operator)
		}
	}
	return nil
}

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "0x" + hex.EncodeToString(h[:])
}

// Issue creates a token for a party: role operator bound to operator, or
// role auditor (operator empty); name must be unique in the file. It returns
// the token, which is not stored anywhere: only its hash is.
func (ts *TokenStore) Issue(role Role, operator, name string) (string, error) {
	return ts.IssueUntil(role, operator, name, time.Time{})
}

// IssueUntil is Issue for a token accepted until expires (zero: never).
func (ts *TokenStore) IssueUntil(role Role, operator, name string, expires time.Time) (string, error) {
	// The file keeps whole seconds: an expiry must be a second or more
	// after the creation time as the file will hold it.
	if !expires.IsZero() && !expires.UTC().Truncate(time.Second).After(time.Now().UTC().Truncate(time.Second)) {
		return "", fmt.Errorf("token %q: expiry %s is not a second or more in the future", name, expires.Format(time.RFC3339Nano))
	}
	if err := ValidateTokenName(name); err != nil {
		return "", err
	}
	if err := validateGrant(role, operator); err != nil {
		return "", err
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	err := ts.update(func(f *tokenFile) error {
		for _, t := range f.Tokens {
			if t.Name == name {
				return fmt.Errorf("a token named %q exists already (revoke it first, or pick another name)", name)
			}
		}
		f.Tokens = append(f.Tokens, TokenInfo{
			Name: name, Role: role, Operator: operator,
			Created: time.Now().UTC().Truncate(time.Second), SHA256: hashToken(token), Expires: expires.UTC().Truncate(time.Second),
		})
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// Revoke deletes the token called name; a running API refuses it from its
// next request on.
func (ts *TokenStore) Revoke(name string) error {
	if err := ValidateTokenName(name); err != nil {
		return err
	}
	if err := ts.has(name); err != nil {
		return err
	}
	return ts.update(func(f *tokenFile) error {
		for i, t := range f.Tokens {
			if t.Name == name {
				f.Tokens = append(f.Tokens[:i], f.Tokens[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("no token named %q in %s", name, ts.path) // revoked meanwhile
	})
}

// has checks that the file holds a token called name.
func (ts *TokenStore) has(name string) error {
	f, err := readTokenFile(ts.path)
	if err != nil {
		return err
	}
	for _, t := range f.Tokens {
		if t.Name == name {
			return nil
		}
	}
	return fmt.Errorf("no token named %q in %s", name, ts.path)
}

// List returns the issued tokens as the file holds them now, by name.
func (ts *TokenStore) List() ([]TokenInfo, error) {
	f, err := readTokenFile(ts.path)
	if err != nil {
		return nil, err
	}
	out := append([]TokenInfo(nil), f.Tokens...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// update reads, changes and atomically rewrites the file under its lock.
func (ts *TokenStore) update(change func(*tokenFile) error) error {
	dir := filepath.Dir(ts.path)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("API token file's directory: %w", err)
	}
	lock := flock.New(ts.path+".lock", flock.SetPermissions(0o600))
	if err := lock.Lock(); err != nil {
		return fmt.Errorf("lock API token file: %w", err)
	}
	defer lock.Unlock()
	f, err := readTokenFile(ts.path)
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	if f.Tokens == nil {
		f.Tokens = []TokenInfo{}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode API token file: %w", err)
	}
	// Renamed over it: a running API reads the old file or the new one,
	// never half.
	if err := writeFileAtomic(ts.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write API token file: %w", err)
	}
	return nil
}
