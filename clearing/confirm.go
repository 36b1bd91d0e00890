package clearing

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
)

// ConfirmKeyFile is the file in clearing's data dir holding the ed25519 seed
// that signs confirmations; terminals are provisioned with its public half
// (`faregate clearing key`).
const ConfirmKeyFile = "confirm.key"

// maxConfirmSpan bounds the sequences one confirmation covers, so a terminal
// far behind is confirmed in steps and no answer reads an unbounded range.
const maxConfirmSpan = 20_000

// signConfirmation builds and signs term's confirmation of (from, upto] as
// the store holds it: the watermark may stop short of upto when more
// rejections are due than one confirmation carries. nonce is the request's
// it answers (none for announcements).
func (c *Clearing) signConfirmation(term string, from, upto, highest uint64, now time.Time, nonce []byte) ([]byte, error) {
	to, digest, rangeDigest, rej, err := c.store.confirmRange(term, from, upto)
	if err != nil {
		return nil, err
	}
	conf := fare.Confirmation{Terminal: term, From: from, Watermark: to, Digest: digest, Highest: max(highest, to), IssuedAt: now.UTC(), Nonce: nonce, Rejected: rej}
	if c.wantsRange(term) {
		conf.HasRange, conf.RangeDigest = true, rangeDigest
	}
	return c.sign(&conf)
}

// wantsRange says whether term asked for range digests (version 3).
func (c *Clearing) wantsRange(term string) bool {
	c.wmMu.RLock()
	defer c.wmMu.RUnlock()
	return c.wantRange[term]
}

// sign signs a confirmation, with the key's rotation chain ahead of it.
func (c *Clearing) sign(conf *fare.Confirmation) ([]byte, error) {
	b, err := conf.Sign(c.cfg.ConfirmKey)
	if err != nil {
		return nil, err
	}
	return fare.Bundle(c.rotations, b), nil
}

// answerConfirmation answers a terminal's request on its watermark subject
// (NATS lets only that terminal publish there). The request carries the
// terminal's own watermark in decimal, and perhaps a nonce the answer
// echoes (fare.WatermarkRequest); the answer confirms from there. A
// request that does not parse is answered from 0, without a nonce.
func (c *Clearing) answerConfirmation(m *nats.Msg) {
	term := m.Subject[len(fare.WatermarkSubject("")):]
	if fare.ValidateID(term) != nil {
		return
	}
	// Every request counts, answered or not: a gate asks about once a
	// second; a flood (an outside red team's 2 million a second, with no
	// reply subject) is named and barred like a feed flood.
	if c.apiCalls.noteN("wm/"+term, time.Now(), 1, watermarkBudget) {
		c.flagFlooder(term, "confirmation requests (a gate asks about once a second)", watermarkBudget)
	}
	// Answer only into the terminal's own inbox: clearing may publish
	// anywhere, and must not be made to publish where the terminal may not.
	if !strings.HasPrefix(m.Reply, fare.TerminalInboxPrefix(term)+".") {
		return
	}
	if m.Header.Get(fare.WantRangeHeader) != "" && !c.wantsRange(term) {
		// It checks whole ranges: its confirmations, announcements too,
		// carry the range digest from now on (in this process; after a
		// restart from its next request, announcements until then are
		// plain, and the terminal waits for that answer). Learnt before
		// the rate limit: a request it drops still teaches this.
		c.wmMu.Lock()
		c.wantRange[term] = true
		c.wmMu.Unlock()
	}
	if !c.mayReadRange(term) {
		return // a terminal asking faster than this is misbehaving
	}
	if c.leaseLapsed() {
		return // not this process's to confirm now (announcer); it asks again
	}
	if hv := m.Header.Get(fare.DenyHeadHeader); hv != "" {
		c.noteGateHead(fare.DenyGateList, hv)
	}
	if hv := m.Header.Get(fare.EnrolHeadHeader); hv != "" {
		c.noteGateHead(fare.EnrolGateList, hv)
	}
	if hv := m.Header.Get(fare.FaceHeadHeader); hv != "" {
		c.noteFaceHead(term, hv)
	}
	c.wmMu.RLock()
	w, hi := c.watermarks[term], c.highest[term]
	c.wmMu.RUnlock()
	from, nonce, err := fare.ParseWatermarkRequest(m.Data)
	if err != nil {
		from, nonce = 0, nil
	}
	from = min(from, w)
	upto := w
	if h := m.Header.Get(fare.ConfirmUptoHeader); h != "" {
		if n, err := strconv.ParseUint(h, 10, 64); err == nil && n >= from {
			upto = min(upto, n) // a terminal narrowing down a range that did not match
		}
	}
	// Issued at the fare clock's time: the gate reads its clock's offset
	// from it, and taps are held or rejected by the fare clock (which a
	// simulated city runs ahead of the wall; the same clock in service).
	b, err := c.signConfirmation(term, from, upto, hi, c.cfg.FareClock(), nonce)
	if err != nil {
		c.log.Error("confirmation", "terminal", term, "err", err)
		return
	}
	_ = m.Respond(b)
}

// watermarkBudget is how many confirmation requests a terminal may make
// in apiWindow before it is named and barred.
const watermarkBudget = 1000

// mayReadRange rate-limits the confirmations that read a terminal's range
// back from the store (its requests, its resends): at most five a second.
func (c *Clearing) mayReadRange(term string) bool {
	c.wmMu.Lock()
	defer c.wmMu.Unlock()
	now := time.Now()
	if now.Sub(c.asked[term]) < 200*time.Millisecond {
		return false
	}
	c.asked[term] = now
	return true
}

// remindGaps sends a confirmation to every terminal clearing holds later
// sequences of than its watermark: the confirmation's Highest above its
// Watermark asks the terminal to resend the missing ones.
func (c *Clearing) remindGaps() {
	c.wmMu.RLock()
	var gaps []string
	for term, hi := range c.highest {
		if hi > c.watermarks[term] {
			gaps = append(gaps, term)
		}
	}
	c.wmMu.RUnlock()
	if c.metrics != nil {
		c.metrics.gaps.Set(float64(len(gaps)))
	}
	now := c.cfg.Now()
	for _, term := range gaps {
		c.wmMu.RLock()
		w, hi := c.watermarks[term], c.highest[term]
		c.wmMu.RUnlock()
		b, err := c.signConfirmation(term, w, w, hi, now, nil)
		if err != nil {
			c.log.Error("confirmation", "terminal", term, "err", err)
			continue
		}
		_ = c.nc.Publish(fare.AppliedSubject(term), b)
	}
}

// confirmRange walks term's recorded sequences from from+1 while they are
// contiguous, up to upto, at most maxConfirmSpan of them and at most
// fare.MaxRejections rejections: it returns how far that reached, the digest
// recorded there and the rejections on the way.
func (s *Store) confirmRange(term string, from, upto uint64) (to uint64, digest, rangeDigest [32]byte, rej []fare.Rejection, err error) {
	to = from
	rh := fare.NewRangeHash(from)
	err = s.db.View(func(txn *badger.Txn) error {
		prefix := dedupKey(term, 0)[:1+len(term)+1]
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix})
		defer it.Close()
		for it.Seek(dedupKey(term, from+1)); it.Valid(); it.Next() {
			seq := u64(it.Item().Key()[len(prefix):])
			if seq > upto || seq != to+1 || seq-from > maxConfirmSpan {
				break
			}
			stop := false
			err := it.Item().Value(func(v []byte) error {
				if len(v) < 33 {
					return fmt.Errorf("dedup record %s/%d: corrupt, %d bytes", term, seq, len(v))
				}
				if v[32] == statusQuarantined {
					if len(rej) == fare.MaxRejections {
						stop = true
						return nil
					}
					r := fare.Rejection{Sequence: seq, Reason: string(v[33:])}
					copy(r.Digest[:], v[:32])
					rej = append(rej, r)
				}
				copy(digest[:], v[:32])
				return nil
			})
			if err != nil {
				return err
			}
			if stop {
				break
			}
			if err := rh.Add(seq, digest); err != nil {
				return err
			}
			to = seq
		}
		if to == from && from > 0 {
			item, err := txn.Get(dedupKey(term, from))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return fmt.Errorf("terminal %s: no record of sequence %d below its watermark", term, from)
			}
			if err != nil {
				return err
			}
			return item.Value(func(v []byte) error { copy(digest[:], v); return nil })
		}
		return nil
	})
	return to, digest, rh.Sum(), rej, err
}

// RejectedSequence is one sequence clearing recorded as rejected for good.
type RejectedSequence struct {
	Terminal string `json:"terminal"`
	Sequence uint64 `json:"sequence"`
	Reason   string `json:"reason"`
	Digest   string `json:"digest"`
}

// Rejections lists every rejected sequence in the store, by terminal and
// sequence.
func (s *Store) Rejections() ([]RejectedSequence, error) {
	var out []RejectedSequence
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pDedup}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 10 {
				continue
			}
			err := it.Item().Value(func(v []byte) error {
				if len(v) > 32 && v[32] == statusQuarantined {
					out = append(out, RejectedSequence{Terminal: string(k[1 : len(k)-9]), Sequence: u64(k[len(k)-8:]), Reason: string(v[33:]), Digest: fmt.Sprintf("0x%x", v[:32])})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// SequenceGap is a terminal whose recorded sequences skip some: each
// sequence in Missing (inclusive ranges) is below one clearing holds, yet
// clearing never recorded it.
type SequenceGap struct {
	Terminal string      `json:"terminal"`
	Highest  uint64      `json:"highest"`
	Count    uint64      `json:"count"`
	Missing  [][2]uint64 `json:"missing"` // at most 20 ranges listed
}

// String lists the missing ranges ("5", "7-9", ...).
func (g SequenceGap) String() string {
	parts := make([]string, 0, len(g.Missing)+1)
	var listed uint64
	for _, r := range g.Missing {
		if r[0] == r[1] {
			parts = append(parts, strconv.FormatUint(r[0], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
		listed += r[1] - r[0] + 1
	}
	if listed < g.Count {
		parts = append(parts, fmt.Sprintf("and %d more", g.Count-listed))
	}
	return strings.Join(parts, ", ")
}

// SequenceGaps walks every terminal's recorded sequences (keys only) and
// returns the terminals with a sequence missing below their highest.
func (s *Store) SequenceGaps() ([]SequenceGap, error) {
	var out []SequenceGap
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDedup}})
		defer it.Close()
		var cur *SequenceGap
		var last uint64
		flush := func() {
			if cur != nil && cur.Count > 0 {
				cur.Highest = last
				out = append(out, *cur)
			}
		}
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 10 {
				continue
			}
			term, seq := string(k[1:len(k)-9]), u64(k[len(k)-8:])
			if cur == nil || cur.Terminal != term {
				flush()
				cur, last = &SequenceGap{Terminal: term}, 0
			}
			if seq > last+1 {
				cur.Count += seq - last - 1
				if len(cur.Missing) < 20 {
					cur.Missing = append(cur.Missing, [2]uint64{last + 1, seq - 1})
				}
			}
			last = seq
		}
		flush()
		return nil
	})
	return out, err
}

// ConfirmRotationsFile, in clearing's data dir, holds the rotation chain of
// the confirmation key: one 0x-hex fare.KeyRotation a line, oldest first,
// each signed by the key before it. Clearing sends it ahead of every
// confirmation (fare.Bundle), so terminals provisioned with any earlier key
// learn the current one.
const ConfirmRotationsFile = "confirm-rotations"

// RotateConfirmKey replaces clearing's confirmation key in dataDir: a new key
// is made, the rotation to it is signed with the old one and appended to the
// chain, and the old key is kept as confirm.key.<n>.old. Run it while
// clearing is stopped; it takes effect at the next start. Each step is
// synced before the next; if it is interrupted, LoadConfirmKey finishes it
// or names what is wrong, and never makes a fresh key in its place.
func RotateConfirmKey(dataDir string, now time.Time) (oldKey, newKey ed25519.PublicKey, err error) {
	if StoreInUse(dataDir) {
		// The running process would go on signing with the old key while
		// `clearing key` printed the new one: gates set up from it would
		// refuse every confirmation as forged.
		return nil, nil, fmt.Errorf("rotate confirmation key: the store in %s is open (clearing is running, or another process such as an audit has it): stop it first; the new key takes effect at clearing's next start", dataDir)
	}
	path := filepath.Join(dataDir, ConfirmKeyFile)
	old, err := LoadConfirmKey(dataDir, false)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate confirmation key: %w", err)
	}
	chain, err := readRotations(dataDir)
	if err != nil {
		return nil, nil, err
	}
	if len(chain) >= fare.MaxRotations {
		return nil, nil, fmt.Errorf("rotate confirmation key: %d rotations already; provision terminals with the current key and start a new chain", len(chain))
	}
	_, next, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := (&fare.KeyRotation{NewKey: next.Public().(ed25519.PublicKey), IssuedAt: now.UTC()}).Sign(old)
	if err != nil {
		return nil, nil, err
	}
	steps := []func() error{
		func() error {
			return writeSynced(path+".new", []byte(hex.EncodeToString(next.Seed())+"\n"), os.O_CREATE|os.O_TRUNC, 0o600)
		},
		func() error {
			return writeSynced(fmt.Sprintf("%s.%d.old", path, len(chain)+1), []byte(hex.EncodeToString(old.Seed())+"\n"), os.O_CREATE|os.O_TRUNC, 0o600)
		},
		// The new key's file must exist for good before the chain names it.
		func() error { return fare.SyncDir(dataDir) },
		func() error {
			return writeSynced(filepath.Join(dataDir, ConfirmRotationsFile), []byte(fmt.Sprintf("0x%x\n", cert)), os.O_CREATE|os.O_APPEND, 0o644)
		},
		func() error { return os.Rename(path+".new", path) },
		func() error { return fare.SyncDir(dataDir) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, fmt.Errorf("rotate confirmation key: %w", err)
		}
	}
	return old.Public().(ed25519.PublicKey), next.Public().(ed25519.PublicKey), nil
}

// LoadConfirmKey reads clearing's confirmation key from dataDir. With create,
// a data dir that never had one gets a fresh key; one with a rotation chain
// never does (terminals would trust nothing it signs). A rotation
// interrupted after its chain was written is finished here.
func LoadConfirmKey(dataDir string, create bool) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, ConfirmKeyFile)
	chain, err := readRotations(dataDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + ".new"); err == nil && len(chain) > 0 {
		pending, err := fare.LoadOrCreateKey(path+".new", "pending confirmation key")
		if err != nil {
			return nil, err
		}
		last := chain[len(chain)-1]
		if len(last) == fare.KeyRotationSize && ed25519.PublicKey(last[2:2+ed25519.PublicKeySize]).Equal(pending.Public()) {
			if err := os.Rename(path+".new", path); err != nil {
				return nil, fmt.Errorf("finish an interrupted key rotation: %w", err)
			}
		}
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && (!create || len(chain) > 0) {
		return nil, fmt.Errorf("no confirmation key %s (clearing makes one on its first start; with a rotation chain it must be restored, not replaced)", path)
	}
	return fare.LoadOrCreateKey(path, "clearing confirmation key")
}

func writeSynced(path string, b []byte, flag int, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|flag, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readRotations reads dataDir's rotation chain (none when the file is absent).
func readRotations(dataDir string) ([][]byte, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, ConfirmRotationsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("confirmation key rotations: %w", err)
	}
	var chain [][]byte
	for i, line := range strings.Fields(string(b)) {
		c, err := hex.DecodeString(strings.TrimPrefix(line, "0x"))
		if err != nil {
			return nil, fmt.Errorf("%s line %d: not hex: %w", ConfirmRotationsFile, i+1, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// checkRotations verifies that chain is a chain of rotations ending at key:
// each link signed by the key the one before introduced. The first link's
// signer is the original key, which the terminals hold and check.
func checkRotations(chain [][]byte, key ed25519.PublicKey) error {
	var prev ed25519.PublicKey
	for i, c := range chain {
		if len(c) != fare.KeyRotationSize || c[0] != fare.KeyRotationTag || c[1] != 1 {
			return fmt.Errorf("%s line %d: not a key rotation", ConfirmRotationsFile, i+1)
		}
		if prev != nil {
			if _, err := fare.VerifyKeyRotation(c, []ed25519.PublicKey{prev}); err != nil {
				return fmt.Errorf("%s line %d: %w", ConfirmRotationsFile, i+1, err)
			}
		}
		prev = ed25519.PublicKey(c[2 : 2+ed25519.PublicKeySize])
	}
	if prev != nil && !prev.Equal(key) {
		return fmt.Errorf("%s ends at key 0x%x, but clearing's key is 0x%x", ConfirmRotationsFile, []byte(prev), []byte(key))
	}
	return nil
}
