package clearing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"filippo.io/edwards25519"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// Registry is the public terminal registry: which operators exist, what a
// ride costs on each (a flat fare until GTFS pricing is wired in), and which
// terminal signs with which key. Anyone holding the registry can verify any
// event, which is what makes events non-repudiable: clearing holds no
// terminal's private key.
type Registry struct {
	Currency  string              `json:"currency"`
	Operators []OperatorConfig    `json:"operators"`
	Terminals []TerminalPublicKey `json:"terminals"`
	// Legs says, per terminal, what its taps ride beside their stop (the
	// network of a station gate, the route of an on-board validator): what
	// live pricing from a GTFS feed needs. Optional without a feed.
	Legs []TerminalLeg `json:"legs,omitempty"`

	operators map[string]*OperatorConfig
	terminals map[string]*TerminalPublicKey
}

// OperatorConfig is one transit operator (a GTFS agency).
type OperatorConfig struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// FlatFare is charged for every accepted entry or validation, in the
	// registry currency's minor units.
	FlatFare fare.Amount `json:"flat_fare"`
}

// TerminalPublicKey is one registered terminal.
type TerminalPublicKey struct {
	ID        string `json:"id"`
	Operator  string `json:"operator"`
	Stop      string `json:"stop"`
	PublicKey []byte `json:"public_key"` // 0x hex in JSON (base64 read too), 32 bytes
	// KeyProof is the key's signature of this registration (fare.ProveKey):
	// what a registration on the ledger must carry for clearing to follow
	// it. 0x hex in JSON; `faregate terminal keygen` prints it.
	KeyProof []byte `json:"key_proof,omitempty"`
}

// terminalJSON is TerminalPublicKey as the registry file writes it.
type terminalJSON struct {
	ID        string `json:"id"`
	Operator  string `json:"operator"`
	Stop      string `json:"stop"`
	PublicKey string `json:"public_key"`
	KeyProof  string `json:"key_proof,omitempty"`
}

// MarshalJSON writes the key and its proof in 0x hex, as every key and hash
// elsewhere.
func (t TerminalPublicKey) MarshalJSON() ([]byte, error) {
	j := terminalJSON{ID: t.ID, Operator: t.Operator, Stop: t.Stop, PublicKey: EncodePublicKey(t.PublicKey)}
	if len(t.KeyProof) > 0 {
		j.KeyProof = "0x" + hex.EncodeToString(t.KeyProof)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the key in 0x hex, or in the base64 that registry
// files written before 2026-12-02 hold; unknown fields are refused.
func (t *TerminalPublicKey) UnmarshalJSON(b []byte) error {
	var j terminalJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	key, err := DecodePublicKey(j.PublicKey)
	if err != nil {
		return fmt.Errorf("terminal %q: %w", j.ID, err)
	}
	var proof []byte
	if j.KeyProof != "" {
		if proof, err = fare.ParseKeyProof(j.KeyProof); err != nil {
			return fmt.Errorf("terminal %q: %w", j.ID, err)
		}
	}
	*t = TerminalPublicKey{ID: j.ID, Operator: j.Operator, Stop: j.Stop, PublicKey: key, KeyProof: proof}
	return nil
}

// DecodePublicKey reads a key as the registry file may hold it: 0x hex, or
// standard base64. The length is checked by the registry's validation.
func DecodePublicKey(s string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, "0x"); ok {
		key, err := hex.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("public key %q: not hex after 0x: %w", s, err)
		}
		return key, nil
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("public key %q: neither 0x hex nor base64", s)
	}
	return key, nil
}

// LoadRegistry reads and validates a registry JSON file.
func LoadRegistry(path string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	r, err := ParseRegistry(b)
	if err != nil {
		return nil, fmt.Errorf("load registry %s: %w", path, err)
	}
	return r, nil
}

// ParseRegistry decodes and validates a registry; unknown fields are errors
// so a typo does not silently drop a terminal.
func ParseRegistry(b []byte) (*Registry, error) {
	var r Registry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode registry: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks r and builds its lookup maps; a Registry built in code
// must be validated before use (Open does it).
func (r *Registry) Validate() error {
	if _, err := fare.CurrencyDigits(r.Currency); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if len(r.Operators) == 0 {
		return errors.New("registry: no operators")
	}
	r.operators = make(map[string]*OperatorConfig, len(r.Operators))
	for i := range r.Operators {
		o := &r.Operators[i]
		if err := fare.ValidateID(o.ID); err != nil {
			return fmt.Errorf("registry: operator %d id %q: %w", i, o.ID, err)
		}
		if len(o.ID) > ledger.MaxOperatorLen {
			return fmt.Errorf("registry: operator id %q: %d bytes, the ledger holds at most %d", o.ID, len(o.ID), ledger.MaxOperatorLen)
		}
		if _, dup := r.operators[o.ID]; dup {
			return fmt.Errorf("registry: operator %q listed twice", o.ID)
		}
		if o.FlatFare < 0 || o.FlatFare > fare.MaxAmount {
			return fmt.Errorf("registry: operator %q: flat fare %d minor units: want 0 to %d", o.ID, o.FlatFare, fare.MaxAmount)
		}
		r.operators[o.ID] = o
	}
	r.terminals = make(map[string]*TerminalPublicKey, len(r.Terminals))
	for i := range r.Terminals {
		t := &r.Terminals[i]
		if err := fare.ValidateID(t.ID); err != nil {
			return fmt.Errorf("registry: terminal %d id %q: %w", i, t.ID, err)
		}
		if _, dup := r.terminals[t.ID]; dup {
			return fmt.Errorf("registry: terminal %q listed twice", t.ID)
		}
		if _, ok := r.operators[t.Operator]; !ok {
			return fmt.Errorf("registry: terminal %q: unknown operator %q", t.ID, t.Operator)
		}
		if err := fare.ValidateID(t.Stop); err != nil {
			return fmt.Errorf("registry: terminal %q stop %q: %w", t.ID, t.Stop, err)
		}
		if len(t.PublicKey) != ed25519.PublicKeySize {
			return fmt.Errorf("registry: terminal %q: public key is %d bytes, want %d", t.ID, len(t.PublicKey), ed25519.PublicKeySize)
		}
		if err := checkTerminalKey(t.PublicKey); err != nil {
			return fmt.Errorf("registry: terminal %q: %w", t.ID, err)
		}
		// A proof is needed only to register on the ledger (PublishRegistry
		// asks for it); one given must be right.
		if t.KeyProof != nil {
			if err := fare.VerifyKeyProof(t.PublicKey, t.Operator, t.ID, t.Stop, t.KeyProof); err != nil {
				return fmt.Errorf("registry: terminal %q: %w", t.ID, err)
			}
		}
		r.terminals[t.ID] = t
	}
	seen := make(map[string]bool, len(r.Legs))
	for i, l := range r.Legs {
		if err := fare.ValidateID(l.Terminal); err != nil {
			return fmt.Errorf("registry: leg %d terminal %q: %w", i, l.Terminal, err)
		}
		if seen[l.Terminal] {
			return fmt.Errorf("registry: legs of terminal %q listed twice", l.Terminal)
		}
		if l.Network == "" && l.Route == "" {
			return fmt.Errorf("registry: legs of terminal %q: name a network or a route", l.Terminal)
		}
		seen[l.Terminal] = true
	}
	return nil
}

// LegsByTerminal returns Legs keyed by terminal id.
func (r *Registry) LegsByTerminal() map[string]TerminalLeg {
	m := make(map[string]TerminalLeg, len(r.Legs))
	for _, l := range r.Legs {
		m[l.Terminal] = l
	}
	return m
}

// LegsByStop gives, by StopLegKey(operator, stop), the leg the registry's
// gates of that operator at that stop all ride (a stop whose gates ride
// different legs has none): what a gate registered on the ledger after the
// file was written, and so without a leg of its own, rides (Pricing).
func (r *Registry) LegsByStop() map[string]TerminalLeg {
	byID := r.LegsByTerminal()
	m := map[string]TerminalLeg{}
	mixed := map[string]bool{}
	for _, t := range r.Terminals {
		l, ok := byID[t.ID]
		if !ok {
			continue
		}
		k := StopLegKey(t.Operator, t.Stop)
		l.Terminal = ""
		if have, ok := m[k]; ok && have != l {
			mixed[k] = true
		}
		m[k] = l
	}
	for k := range mixed {
		delete(m, k)
	}
	return m
}

// StopLegKey is LegsByStop's key of an operator's stop.
func StopLegKey(operator, stop string) string { return operator + "\x00" + stop }

// TerminalKey implements TerminalKeys from the registry file.
func (r *Registry) TerminalKey(id string) (TerminalPublicKey, bool) {
	t, ok := r.terminals[id]
	if !ok {
		return TerminalPublicKey{}, false
	}
	return *t, true
}

// TerminalKeys gives the key, operator and stop a terminal was registered
// with, revoked or not: what an audit checks a stored event's signature
// against. *ChainTerminals (the shared ledger's registry) and *Registry (a
// registry file) implement it.
type TerminalKeys interface {
	// TerminalKey returns the registered terminal id, with its operator,
	// stop and public key; false when none is registered under id.
	TerminalKey(id string) (TerminalPublicKey, bool)
}

// Operator returns a registered operator.
func (r *Registry) Operator(id string) (*OperatorConfig, bool) {
	o, ok := r.operators[id]
	return o, ok
}

// OperatorIDs returns the operator ids in sorted order.
func (r *Registry) OperatorIDs() []string {
	ids := make([]string, 0, len(r.Operators))
	for _, o := range r.Operators {
		ids = append(ids, o.ID)
	}
	sort.Strings(ids)
	return ids
}

// Save writes r as indented JSON.
func (r *Registry) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode registry: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save registry: %w", err)
	}
	return nil
}

// EncodePublicKey renders a key the way the registry file stores it: 0x hex.
func EncodePublicKey(pub ed25519.PublicKey) string { return "0x" + hex.EncodeToString(pub) }

// checkTerminalKey refuses an Ed25519 public key that is no point of the
// curve, or one of small order: for those a signature verifies without the
// private key (the identity point accepts R = identity, s = 0 for any
// message), and the terminal's NATS user key, derived from it, would be
// known to all.
func checkTerminalKey(pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return fmt.Errorf("public key 0x%x is no point of the curve", pub)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return fmt.Errorf("public key 0x%x is of small order: signatures under it can be forged", pub)
	}
	// A key of mixed order (a real key plus a small-order point) is another
	// encoding of the same secret: its holder could register it beside the
	// real one, past "one key, one terminal", and sign as either (ZIP-215
	// accepts its ordinary signatures under both). No key made by ed25519
	// key generation has a small-order part: [L]A is the identity.
	lp := new(edwards25519.Point).ScalarMult(orderMinusOne, p)
	if lp.Add(lp, p).Equal(edwards25519.NewIdentityPoint()) != 1 {
		return fmt.Errorf("public key 0x%x has a small-order part (a key plus a torsion point): not a key ed25519 key generation makes", pub)
	}
	return nil
}

// orderMinusOne is L-1, L the order of the ed25519 base point's group:
// [L-1]A + A is [L]A without a scalar holding L (scalars are reduced mod L).
var orderMinusOne = func() *edwards25519.Scalar {
	b := []byte{0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b)
	if err != nil {
		panic(err)
	}
	return s
}()

// NewTerminalEntry returns the registry entry of terminal id (of operator,
// at stop) that signs with key, with the key's proof of its registration:
// what `faregate terminal keygen` prints and a registration on the ledger
// carries.
func NewTerminalEntry(key ed25519.PrivateKey, id, operator, stop string) (TerminalPublicKey, error) {
	proof, err := fare.ProveKey(key, operator, id, stop)
	if err != nil {
		return TerminalPublicKey{}, fmt.Errorf("terminal %s: %w", id, err)
	}
	return TerminalPublicKey{ID: id, Operator: operator, Stop: stop, PublicKey: key.Public().(ed25519.PublicKey), KeyProof: proof}, nil
}
