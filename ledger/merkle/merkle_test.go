package merkle

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func h32(t testing.TB, s string) [32]byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) != 32 {
		t.Fatalf("bad bytes32 %q: %v", s, err)
	}
	return [32]byte(b)
}

func hexOf(v [32]byte) string { return "0x" + hex.EncodeToString(v[:]) }

// values returns n deterministic distinct values.
func values(n int, seed string) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		out[i] = sha256.Sum256(append([]byte(seed), b[:]...))
	}
	return out
}

type ozCase struct {
	Name          string     `json:"name"`
	Values        []string   `json:"values"`
	Root          string     `json:"root"`
	Tree          []string   `json:"tree"`
	Proofs        [][]string `json:"proofs"`
	ProofsByValue [][]string `json:"proofsByValue"`
}

// TestOpenZeppelinFixtures compares every node and proof with what
// @openzeppelin/merkle-tree produced for the same values
// (ledger/contracts/merkle-fixtures.js writes the fixture file).
func TestOpenZeppelinFixtures(t *testing.T) {
	raw, err := os.ReadFile("testdata/openzeppelin.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Generator string   `json:"generator"`
		Cases     []ozCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Cases) < 10 {
		t.Fatalf("only %d fixture cases", len(fx.Cases))
	}
	for _, c := range fx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			vals := make([][32]byte, len(c.Values))
			for i, v := range c.Values {
				vals[i] = h32(t, v)
			}
			tree, err := New(vals)
			if err != nil {
				t.Fatal(err)
			}
			if got := hexOf(tree.Root()); got != c.Root {
				t.Fatalf("root %s, OpenZeppelin %s", got, c.Root)
			}
			nodes := tree.Nodes()
			if len(nodes) != len(c.Tree) {
				t.Fatalf("%d nodes, OpenZeppelin %d", len(nodes), len(c.Tree))
			}
			for i, n := range nodes {
				if hexOf(n) != c.Tree[i] {
					t.Fatalf("node %d: %s, OpenZeppelin %s", i, hexOf(n), c.Tree[i])
				}
			}
			check := func(kind string, i int, got [][32]byte, want []string) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s %d: proof length %d, OpenZeppelin %d", kind, i, len(got), len(want))
				}
				for j := range got {
					if hexOf(got[j]) != want[j] {
						t.Fatalf("%s %d: proof[%d] %s, OpenZeppelin %s", kind, i, j, hexOf(got[j]), want[j])
					}
				}
				if !Verify(tree.Root(), vals[i], got) {
					t.Fatalf("%s %d: proof does not verify", kind, i)
				}
			}
			for i := range vals {
				p, err := tree.Proof(i)
				if err != nil {
					t.Fatal(err)
				}
				check("index", i, p, c.Proofs[i])
			}
			for i, want := range c.ProofsByValue {
				p, err := tree.ProofFor(vals[i])
				if err != nil {
					t.Fatal(err)
				}
				check("value", i, p, want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	a, b, c := values(3, "table")[0], values(3, "table")[1], values(3, "table")[2]
	la, lb, lc := LeafHash(a), LeafHash(b), LeafHash(c)
	tests := []struct {
		name   string
		values [][32]byte
		root   [32]byte
	}{
		{"single leaf is the root", [][32]byte{a}, la},
		{"two leaves hash as a sorted pair", [][32]byte{a, b}, HashPair(la, lb)},
		{"order of values does not matter", [][32]byte{b, a}, HashPair(la, lb)},
		// Three leaves: an unbalanced tree, see threeRoot.
		{"three leaves", [][32]byte{a, b, c}, threeRoot(la, lb, lc)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := New(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if tree.Root() != tc.root {
				t.Fatalf("root %x, want %x", tree.Root(), tc.root)
			}
			for i, v := range tc.values {
				p, err := tree.Proof(i)
				if err != nil {
					t.Fatal(err)
				}
				if !Verify(tree.Root(), v, p) {
					t.Fatalf("value %d does not verify", i)
				}
			}
		})
	}
}

// threeRoot lays out three leaves the OpenZeppelin way: sorted leaves
// s0 <= s1 <= s2 go to nodes 4, 3, 2; node 1 = pair(node 3, node 4); root =
// pair(node 1, node 2).
func threeRoot(l ...[32]byte) [32]byte {
	s := append([][32]byte(nil), l...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if string(s[j][:]) < string(s[i][:]) {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return HashPair(HashPair(s[1], s[0]), s[2])
}

func TestErrors(t *testing.T) {
	if _, err := New(nil); !errors.Is(err, ErrEmpty) {
		t.Fatalf("New(nil) = %v, want ErrEmpty", err)
	}
	tree, err := New(values(5, "errors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{-1, 5} {
		if _, err := tree.Proof(i); err == nil {
			t.Fatalf("Proof(%d) succeeded", i)
		}
	}
	if _, err := tree.ProofFor([32]byte{1}); err == nil {
		t.Fatal("ProofFor(absent value) succeeded")
	}
}

func TestWrongProofsFail(t *testing.T) {
	vals := values(37, "wrong")
	tree, err := New(vals)
	if err != nil {
		t.Fatal(err)
	}
	root := tree.Root()
	p, _ := tree.Proof(7)
	other, _ := tree.Proof(8)
	cases := map[string]struct {
		value [32]byte
		proof [][32]byte
	}{
		"other value":         {vals[8], p},
		"other value's proof": {vals[7], other},
		"truncated proof":     {vals[7], p[:len(p)-1]},
		"extended proof":      {vals[7], append(append([][32]byte(nil), p...), root)},
		"flipped bit":         {vals[7], flip(p, 2)},
		"leaf hash as value":  {LeafHash(vals[7]), p},
		"empty proof":         {vals[7], nil},
	}
	for name, c := range cases {
		if Verify(root, c.value, c.proof) {
			t.Errorf("%s: verified", name)
		}
	}
	// An inner node is 64 bytes hashed once; a leaf value hashed twice can not
	// be made to equal it, so presenting an inner node's children is no proof.
	if Verify(root, tree.Nodes()[1], [][32]byte{tree.Nodes()[2]}) {
		t.Error("inner node accepted as a leaf")
	}
}

func flip(p [][32]byte, i int) [][32]byte {
	q := append([][32]byte(nil), p...)
	q[i][0] ^= 1
	return q
}

// TestLargeTree checks a tree big enough to be built on several cores against
// a serial recomputation of every inner node.
func TestLargeTree(t *testing.T) {
	n := parallelMin*2 + 3
	vals := values(n, "large")
	tree, err := New(vals)
	if err != nil {
		t.Fatal(err)
	}
	// Recompute every inner node serially.
	nodes := tree.Nodes()
	for i := n - 2; i >= 0; i-- {
		if want := HashPair(nodes[2*i+1], nodes[2*i+2]); nodes[i] != want {
			t.Fatalf("node %d mismatch", i)
		}
	}
	for _, i := range []int{0, 1, n / 2, n - 1} {
		p, _ := tree.Proof(i)
		if !Verify(tree.Root(), vals[i], p) {
			t.Fatalf("value %d does not verify", i)
		}
	}
}

// FuzzProofRoundTrip: every value of any tree verifies with its proof, and a
// value that is not in the tree does not verify with any of them.
func FuzzProofRoundTrip(f *testing.F) {
	f.Add([]byte("a"), uint16(1), uint16(0))
	f.Add([]byte("faregate"), uint16(7), uint16(3))
	f.Add([]byte{0, 1, 2}, uint16(300), uint16(299))
	f.Fuzz(func(t *testing.T, seed []byte, n, pick uint16) {
		count := int(n%512) + 1
		vals := values(count, string(seed))
		tree, err := New(vals)
		if err != nil {
			t.Fatal(err)
		}
		i := int(pick) % count
		p, err := tree.Proof(i)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(tree.Root(), vals[i], p) {
			t.Fatalf("value %d of %d does not verify", i, count)
		}
		absent := sha256.Sum256(append([]byte("absent"), seed...))
		if Verify(tree.Root(), absent, p) {
			t.Fatalf("absent value verifies with proof of %d", i)
		}
		if j, ok := tree.Index(vals[i]); !ok || vals[j] != vals[i] {
			t.Fatalf("Index(%d) = %d, %v", i, j, ok)
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		vals := values(n, "bench")
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(vals); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	vals := values(1<<20, "verify") // depth 20, like a busy period
	tree, err := New(vals)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := tree.Proof(12345)
	root := tree.Root()
	b.ReportMetric(float64(len(p)), "depth")
	for b.Loop() {
		if !Verify(root, vals[12345], p) {
			b.Fatal("does not verify")
		}
	}
}

// TestNewHashed: a tree built from leaf hashes computed beforehand is New's,
// node for node (with duplicates, small and split across cores); hashes of
// the wrong count are refused.
func TestNewHashed(t *testing.T) {
	for _, n := range []int{1, 2, 7, parallelMin + 5} {
		vals := values(n, fmt.Sprint("hashed", n))
		if n > 2 {
			vals[n-1] = vals[0] // a duplicate keeps its own leaf
		}
		hashes := make([][32]byte, n)
		for i, v := range vals {
			hashes[i] = LeafHash(v)
		}
		want, err := New(vals)
		if err != nil {
			t.Fatal(err)
		}
		got, err := NewHashed(vals, hashes)
		if err != nil {
			t.Fatal(err)
		}
		if got.Root() != want.Root() || fmt.Sprint(got.Nodes()) != fmt.Sprint(want.Nodes()) {
			t.Fatalf("%d values: tree from leaf hashes differs from New's", n)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			p, _ := got.Proof(i)
			if !Verify(got.Root(), vals[i], p) {
				t.Fatalf("%d values: value %d does not verify", n, i)
			}
		}
	}
	if _, err := NewHashed(values(3, "x"), make([][32]byte, 2)); err == nil {
		t.Fatal("NewHashed with 2 leaf hashes for 3 values succeeded")
	}
	if _, err := NewHashed(nil, nil); !errors.Is(err, ErrEmpty) {
		t.Fatalf("NewHashed(nil) = %v, want ErrEmpty", err)
	}
}
