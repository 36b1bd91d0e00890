// Package merkle builds the Merkle trees whose roots Faregate commits on chain
// once per settlement period, and the inclusion proofs that let any operator check
// an event against a committed root.
//
// The tree is byte-identical to OpenZeppelin's StandardMerkleTree
// (@openzeppelin/merkle-tree) with leaf encoding ["bytes32"], so proofs made here
// verify with OpenZeppelin's MerkleProof.verify, with the Settlement contract's
// verify view, and with any tooling built on the JavaScript library:
//
//   - a value's leaf is keccak256(keccak256(abi.encode(value))) — for a bytes32
//     value abi.encode is the value itself, and hashing twice keeps a 64-byte
//     inner node from ever being passed off as a leaf;
//   - leaves are sorted by hash (ties keep input order), and laid out as
//     OpenZeppelin does: a flat array of 2n-1 nodes, node i having children
//     2i+1 and 2i+2, the sorted leaves stored from the end backwards;
//   - an inner node is keccak256 of its two children, smaller first, so a proof
//     is just the list of siblings with no left/right flags.
//
// The package does no I/O and has no dependency beyond a keccak implementation,
// so the clearing hot path can use it without pulling in an Ethereum node.
package merkle

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"slices"
	"sync"

	"github.com/ethereum/go-ethereum/crypto/keccak"
)

// ErrEmpty is returned by New for an empty value list: OpenZeppelin defines no
// tree (and no root) for zero leaves, and neither do we.
var ErrEmpty = errors.New("merkle: no values")

// keccakState is the subset of go-ethereum's keccak state we use; Read squeezes
// the digest without the allocation Sum makes.
type keccakState interface {
	hash.Hash
	Read([]byte) (int, error)
}

func newHasher() keccakState {
	return keccak.NewLegacyKeccak256().(keccakState)
}

// hasherPool keeps keccak states for the package-level helpers, which are called
// per event on the clearing path.
var hasherPool = sync.Pool{New: func() any { return &hasher{k: newHasher()} }}

// hasher bundles a keccak state with a scratch buffer so a tree build allocates
// nothing per node.
type hasher struct {
	k   keccakState
	buf [64]byte
}

func (h *hasher) leaf(value [32]byte) (out [32]byte) {
	// Everything goes through h.buf: slices of parameters or results passed to
	// the interface methods would escape and cost an allocation per hash.
	copy(h.buf[:32], value[:])
	h.k.Reset()
	h.k.Write(h.buf[:32])
	h.k.Read(h.buf[:32])
	h.k.Reset()
	h.k.Write(h.buf[:32])
	h.k.Read(h.buf[:32])
	return [32]byte(h.buf[:32])
}

func (h *hasher) pair(a, b [32]byte) (out [32]byte) {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	copy(h.buf[:32], a[:])
	copy(h.buf[32:], b[:])
	h.k.Reset()
	h.k.Write(h.buf[:])
	h.k.Read(h.buf[:32])
	return [32]byte(h.buf[:32])
}

func withHasher[T any](f func(*hasher) T) T {
	h := hasherPool.Get().(*hasher)
	out := f(h)
	hasherPool.Put(h)
	return out
}

// LeafHash returns the leaf node for value: keccak256(keccak256(value)), which is
// OpenZeppelin's standardLeafHash for the leaf encoding ["bytes32"].
func LeafHash(value [32]byte) [32]byte {
	return withHasher(func(h *hasher) [32]byte { return h.leaf(value) })
}

// HashPair returns the inner node above a and b: keccak256 of the two, smaller
// first. Ordering the pair makes proofs direction-free, as in OpenZeppelin's
// MerkleProof.
func HashPair(a, b [32]byte) [32]byte {
	return withHasher(func(h *hasher) [32]byte { return h.pair(a, b) })
}

// ProcessProof folds proof into leaf (a leaf node, already hashed) and returns the
// root it implies.
func ProcessProof(leaf [32]byte, proof [][32]byte) [32]byte {
	return withHasher(func(h *hasher) [32]byte {
		node := leaf
		for _, sibling := range proof {
			node = h.pair(node, sibling)
		}
		return node
	})
}

// Verify reports whether value (the raw bytes32, not its leaf hash) is included
// under root according to proof. It is the off-chain twin of the Settlement
// contract's verify view.
func Verify(root, value [32]byte, proof [][32]byte) bool {
	return ProcessProof(LeafHash(value), proof) == root
}

// Tree is an immutable Merkle tree over a list of bytes32 values. It is safe for
// concurrent reads.
type Tree struct {
	nodes     [][32]byte // OpenZeppelin layout: nodes[0] is the root
	values    [][32]byte // the values in input order
	treeIndex []int      // treeIndex[i] is the node index of values[i]'s leaf
}

// parallelMin is the tree size from which hashing is split across cores; below
// it goroutine start-up costs more than it saves.
const parallelMin = 1 << 13

// New builds the tree over values (kept in input order for Proof and Value).
// Duplicate values are allowed, as in OpenZeppelin, and each gets its own leaf.
// The values slice is copied.
func New(values [][32]byte) (*Tree, error) {
	return build(values, nil)
}

// NewHashed is New for values whose leaf hashes (LeafHash of each) the
// caller computed already, as it received them: the leaf hashes are two
// thirds of New's work. The slices are copied.
func NewHashed(values, leafHashes [][32]byte) (*Tree, error) {
	if len(leafHashes) != len(values) {
		return nil, fmt.Errorf("merkle: %d leaf hashes for %d values", len(leafHashes), len(values))
	}
	return build(values, leafHashes)
}

func build(values, leafHashes [][32]byte) (*Tree, error) {
	n := len(values)
	if n == 0 {
		return nil, ErrEmpty
	}
	t := &Tree{
		nodes:     make([][32]byte, 2*n-1),
		values:    slices.Clone(values),
		treeIndex: make([]int, n),
	}

	// Leaf hashes, in parallel for large trees: they are two thirds of the work.
	type hashed struct {
		hash  [32]byte
		index int
	}
	leaves := make([]hashed, n)
	if leafHashes != nil {
		for i, lh := range leafHashes {
			leaves[i] = hashed{lh, i}
		}
	} else {
		parallel(n, func(lo, hi int) {
			h := &hasher{k: newHasher()}
			for i := lo; i < hi; i++ {
				leaves[i] = hashed{h.leaf(values[i]), i}
			}
		})
	}

	// Sort by hash; ties (duplicate values) keep input order, as JavaScript's
	// stable sort does in OpenZeppelin's implementation.
	slices.SortFunc(leaves, func(a, b hashed) int {
		if c := bytes.Compare(a.hash[:], b.hash[:]); c != 0 {
			return c
		}
		return a.index - b.index
	})
	last := len(t.nodes) - 1
	for i, l := range leaves {
		t.nodes[last-i] = l.hash
		t.treeIndex[l.index] = last - i
	}

	// Inner nodes, deepest first. All nodes of one depth (indices 2^d-1 to
	// 2^(d+1)-2) depend only on deeper ones, so each depth can be split freely.
	internal := n - 1 // nodes 0..n-2 are inner nodes
	depth := 0
	for (1<<(depth+1))-1 < internal {
		depth++
	}
	for d := depth; d >= 0; d-- {
		lo := (1 << d) - 1
		hi := min((1<<(d+1))-1, internal)
		if lo >= hi {
			continue
		}
		parallel(hi-lo, func(a, b int) {
			h := &hasher{k: newHasher()}
			for i := lo + a; i < lo+b; i++ {
				t.nodes[i] = h.pair(t.nodes[2*i+1], t.nodes[2*i+2])
			}
		})
	}
	return t, nil
}

// parallel runs f over [0, n) in contiguous chunks, one per core, or inline for
// small n.
func parallel(n int, f func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < parallelMin || workers < 2 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// Root returns the tree's root, the value committed on chain.
func (t *Tree) Root() [32]byte { return t.nodes[0] }

// Len returns the number of values (leaves).
func (t *Tree) Len() int { return len(t.values) }

// Value returns the i-th value in input order.
func (t *Tree) Value(i int) [32]byte { return t.values[i] }

// Nodes returns a copy of the whole tree in OpenZeppelin's layout (the "tree"
// array of StandardMerkleTree.dump()), for export and cross-checking.
func (t *Tree) Nodes() [][32]byte { return slices.Clone(t.nodes) }

// Index returns the position (in input order) of value. For a duplicated value
// it returns the last position, as OpenZeppelin's leafLookup does.
func (t *Tree) Index(value [32]byte) (int, bool) {
	leaf := LeafHash(value)
	for i := len(t.values) - 1; i >= 0; i-- {
		if t.nodes[t.treeIndex[i]] == leaf {
			return i, true
		}
	}
	return 0, false
}

// Proof returns the inclusion proof of the i-th value (input order): the sibling
// nodes from the leaf up to, not including, the root.
func (t *Tree) Proof(i int) ([][32]byte, error) {
	if i < 0 || i >= len(t.values) {
		return nil, fmt.Errorf("merkle: proof for index %d of %d values: out of range", i, len(t.values))
	}
	var proof [][32]byte
	for node := t.treeIndex[i]; node > 0; node = (node - 1) / 2 {
		sibling := node + 1
		if node%2 == 0 {
			sibling = node - 1
		}
		proof = append(proof, t.nodes[sibling])
	}
	return proof, nil
}

// ProofFor returns the inclusion proof of value, looked up as Index does. It
// scans the values, so callers proving many values should keep their indices and
// call Proof.
func (t *Tree) ProofFor(value [32]byte) ([][32]byte, error) {
	i, ok := t.Index(value)
	if !ok {
		return nil, fmt.Errorf("merkle: proof for 0x%x: value not in tree", value)
	}
	return t.Proof(i)
}
