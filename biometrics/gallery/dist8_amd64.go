//go:build goexperiment.simd && amd64

package gallery

import "simd/archsimd"

// The SIMD kernels compute dist8 through the expansion
//
//	sum((q - qfine*c)^2) = sum(q^2) + qfine^2*sum(c^2) - 2*qfine*sum(q*c)
//
// with sum(c^2) stored per row (Gallery.norms) and sum(q^2) once per
// query (query.sq), so a row costs one VPMADDWD per 16 or 32 codes: the
// codes are sign-extended to int16 and multiplied by the query's int16
// lanes, pairs added into int32. |sum(q*c)| <= 128*2032*128 < 2^25, and
// the terms are combined in wrapping int32 arithmetic whose true result,
// the distance, lies in [0, 2^31) (see qfine): the result equals the plain
// kernel's bit for bit.
//
// The scan is memory-bound: a row is 128 bytes. To keep the work per byte
// low, 8 rows are done at once, one accumulator each, so that a chunk of
// the query is loaded once for 8 rows; their lanes are summed together by
// interleaves and permutes (a transposing reduction) instead of reducing
// each row to a scalar; and 8 distances are compared with the limit and
// stored with one instruction each. 8 rows, not 16: the compiler allocates
// 16 vector registers, and 16 accumulators would spill to the stack.

func init() {
	simdBuilt = true
	// The CPU check: AVX512 reports F, CD, BW, DQ and VL together (BW is
	// what the 512-bit int16 instructions need), and implies AVX2.
	if archsimd.X86.AVX2() {
		kernels = append(kernels, kernel{"avx2", distsAVX2, sqAVX2})
	}
	if archsimd.X86.AVX512() {
		kernels = append(kernels, kernel{"avx512", distsAVX512, sqAVX512})
	}
}

// dot16 is the VPMADDWD step: the products q*c, added in pairs.
func dot16(q archsimd.Int16x16, c archsimd.Int8x16) archsimd.Int32x8 {
	return q.DotProductPairs(c.ExtendToInt16())
}

// dot32 is dot16 on 512-bit vectors.
func dot32(q archsimd.Int16x32, c archsimd.Int8x32) archsimd.Int32x16 {
	return q.DotProductPairs(c.ExtendToInt16())
}

// finish turns the dot products of 8 rows into their distances, stores
// them in out and returns the bits of those within limit.
func finish(q *query, norms *[8]int32, dot archsimd.Int32x8, limit int32, out *[8]int32) uint64 {
	// qfine^2 = 1<<8, 2*qfine = 1<<5.
	nc := archsimd.LoadInt32x8(norms).ShiftAllLeft(8)
	d := archsimd.BroadcastInt32x8(q.sq).Add(nc).Sub(dot.ShiftAllLeft(5))
	d.Store(out)
	return uint64(d.LessEqual(archsimd.BroadcastInt32x8(limit)).ToBits())
}

// fold8x32 adds the 32-bit lanes of a and b so that, in each 128-bit
// group, lanes 0 and 2 hold a's two partial sums and lanes 1 and 3 b's.
func fold8x32(a, b archsimd.Int32x8) archsimd.Int32x8 {
	return a.InterleaveLoGrouped(b).Add(a.InterleaveHiGrouped(b))
}

// fold8x64 takes two fold8x32 results (rows a,b and c,d) and leaves, in
// each 128-bit group, the group's sums of a, b, c, d in lanes 0-3.
func fold8x64(ab, cd archsimd.Int32x8) archsimd.Int32x8 {
	x, y := ab.AsInt64x4(), cd.AsInt64x4()
	return x.InterleaveLoGrouped(y).AsInt32x8().Add(x.InterleaveHiGrouped(y).AsInt32x8())
}

// fold16x32 and fold16x64 are fold8x32 and fold8x64 on 512-bit vectors.
func fold16x32(a, b archsimd.Int32x16) archsimd.Int32x16 {
	return a.InterleaveLoGrouped(b).Add(a.InterleaveHiGrouped(b))
}

func fold16x64(ab, cd archsimd.Int32x16) archsimd.Int32x16 {
	x, y := ab.AsInt64x8(), cd.AsInt64x8()
	return x.InterleaveLoGrouped(y).AsInt32x16().Add(x.InterleaveHiGrouped(y).AsInt32x16())
}

// distsAVX2 takes 16 codes of 8 rows an iteration; the tail goes to
// dist8.
func distsAVX2(q *query, codes []int8, norms []int32, limit int32, out []int32) uint64 {
	codes, norms = codes[:len(out)*Dim], norms[:len(out)]
	var mask uint64
	i := 0
	for ; i+8 <= len(out); i += 8 {
		p := (*[8 * Dim]int8)(codes[i*Dim:])
		var a0, a1, a2, a3, a4, a5, a6, a7 archsimd.Int32x8
		for j := 0; j < Dim; j += 16 {
			qj := archsimd.LoadInt16x16((*[16]int16)(q.code[j:]))
			a0 = a0.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[0*Dim+j:]))))
			a1 = a1.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[1*Dim+j:]))))
			a2 = a2.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[2*Dim+j:]))))
			a3 = a3.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[3*Dim+j:]))))
			a4 = a4.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[4*Dim+j:]))))
			a5 = a5.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[5*Dim+j:]))))
			a6 = a6.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[6*Dim+j:]))))
			a7 = a7.Add(dot16(qj, archsimd.LoadInt8x16((*[16]int8)(p[7*Dim+j:]))))
		}
		abcd := fold8x64(fold8x32(a0, a1), fold8x32(a2, a3))
		efgh := fold8x64(fold8x32(a4, a5), fold8x32(a6, a7))
		// Low groups of both, then high groups of both: rows 0-7 in order.
		s := abcd.Select128FromPair(0, 2, efgh).Add(abcd.Select128FromPair(1, 3, efgh))
		mask |= finish(q, (*[8]int32)(norms[i:]), s, limit, (*[8]int32)(out[i:])) << i
	}
	// The caller's float code is SSE: leave no dirty upper halves behind.
	archsimd.ClearAVXUpperBits()
	return mask | distsTail(q, codes, limit, out, i)
}

// distsTail does rows i.. of a SIMD kernel's run with dist8.
func distsTail(q *query, codes []int8, limit int32, out []int32, i int) uint64 {
	var mask uint64
	for ; i < len(out); i++ {
		out[i] = dist8(&q.code, (*[Dim]int8)(codes[i*Dim:]))
		if out[i] <= limit {
			mask |= 1 << i
		}
	}
	return mask
}

// evenGroups and oddGroups index the concatenation of two vectors x, y
// of four 128-bit groups each: {x0, x2, y0, y2} and {x1, x3, y1, y3}.
var evenGroups = [16]uint32{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27}
var oddGroups = [16]uint32{4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31}

// distsAVX512 is distsAVX2 with 32 codes an iteration.
func distsAVX512(q *query, codes []int8, norms []int32, limit int32, out []int32) uint64 {
	codes, norms = codes[:len(out)*Dim], norms[:len(out)]
	even := archsimd.LoadUint32x16(&evenGroups)
	odd := archsimd.LoadUint32x16(&oddGroups)
	var mask uint64
	i := 0
	for ; i+8 <= len(out); i += 8 {
		p := (*[8 * Dim]int8)(codes[i*Dim:])
		var a0, a1, a2, a3, a4, a5, a6, a7 archsimd.Int32x16
		for j := 0; j < Dim; j += 32 {
			qj := archsimd.LoadInt16x32((*[32]int16)(q.code[j:]))
			a0 = a0.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[0*Dim+j:]))))
			a1 = a1.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[1*Dim+j:]))))
			a2 = a2.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[2*Dim+j:]))))
			a3 = a3.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[3*Dim+j:]))))
			a4 = a4.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[4*Dim+j:]))))
			a5 = a5.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[5*Dim+j:]))))
			a6 = a6.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[6*Dim+j:]))))
			a7 = a7.Add(dot32(qj, archsimd.LoadInt8x32((*[32]int8)(p[7*Dim+j:]))))
		}
		// Rows 0-3 and 4-7 as group sums: {A0, A1, A2, A3} and {E0, E1,
		// E2, E3}, each group 4 rows. Adding groups 0+1 and 2+3 of both
		// gives {A01, A23, E01, E23}; once more, with itself, {A, E, A, E}:
		// rows 0-7 in order in the low half.
		abcd := fold16x64(fold16x32(a0, a1), fold16x32(a2, a3))
		efgh := fold16x64(fold16x32(a4, a5), fold16x32(a6, a7))
		s := abcd.ConcatPermute(efgh, even).Add(abcd.ConcatPermute(efgh, odd))
		s = s.ConcatPermute(s, even).Add(s.ConcatPermute(s, odd))
		mask |= finish(q, (*[8]int32)(norms[i:]), s.GetLo(), limit, (*[8]int32)(out[i:])) << i
	}
	archsimd.ClearAVXUpperBits()
	return mask | distsTail(q, codes, limit, out, i)
}

// sqAVX2 is sqPlain with 8 lanes in two chains. The float32 result is
// taken from the low lane after ClearAVXUpperBits: the scalar float code
// that follows is SSE, and reading a lane with dirty upper halves costs
// more than the whole sum.
func sqAVX2(a, b *Vector) float32 {
	var s0, s1 archsimd.Float32x8
	for j := 0; j < Dim; j += 16 {
		d0 := archsimd.LoadFloat32x8((*[8]float32)(a[j:])).Sub(archsimd.LoadFloat32x8((*[8]float32)(b[j:])))
		d1 := archsimd.LoadFloat32x8((*[8]float32)(a[j+8:])).Sub(archsimd.LoadFloat32x8((*[8]float32)(b[j+8:])))
		s0 = s0.Add(d0.Mul(d0))
		s1 = s1.Add(d1.Mul(d1))
	}
	s := s0.Add(s1)
	r := s.GetLo().Add(s.GetHi())
	r = r.AddPairs(r)
	r = r.AddPairs(r)
	archsimd.ClearAVXUpperBits()
	return r.GetElem(0)
}

// sqAVX512 is sqAVX2 with 16 lanes.
func sqAVX512(a, b *Vector) float32 {
	var s0, s1 archsimd.Float32x16
	for j := 0; j < Dim; j += 32 {
		d0 := archsimd.LoadFloat32x16((*[16]float32)(a[j:])).Sub(archsimd.LoadFloat32x16((*[16]float32)(b[j:])))
		d1 := archsimd.LoadFloat32x16((*[16]float32)(a[j+16:])).Sub(archsimd.LoadFloat32x16((*[16]float32)(b[j+16:])))
		s0 = s0.Add(d0.Mul(d0))
		s1 = s1.Add(d1.Mul(d1))
	}
	s8 := s0.Add(s1)
	s := s8.GetLo().Add(s8.GetHi())
	r := s.GetLo().Add(s.GetHi())
	r = r.AddPairs(r)
	r = r.AddPairs(r)
	archsimd.ClearAVXUpperBits()
	return r.GetElem(0)
}
