// Package xz decodes the parts of xz files that jsplan's flash pipeline
// reads in process: LZMA2 streams, xz block headers and the CRC64 of zero
// runs. It parses untrusted images; fuzz tests compare it with
// github.com/ulikunitz/xz and the xz program.
package xz

import (
	"errors"
	"fmt"
)

// An in-process LZMA2 decoder for the blocks of xz files.
//
// liblzma copies every match byte by byte; the long distance-1 matches that
// encode runs of zeros (most of a sparse disk image) take it about 3 ns a
// byte. Here such a match is a memclr or a doubling copy, so a run of zeros
// costs little more than decoding its few symbols. Written from the LZMA
// and xz format specifications.

// ErrCorrupt is returned (wrapped) for data that is not valid LZMA2.
var ErrCorrupt = errors.New("corrupt LZMA2 data")

const (
	lzmaStates        = 12
	lzmaPosStatesMax  = 1 << 4
	lzmaEndPosModel   = 14
	lzmaFullDistances = 1 << (lzmaEndPosModel >> 1)
	lzmaAlignBits     = 4
	lzmaLenToPos      = 4
	lzmaMatchMinLen   = 2
	probInit          = 1 << 10
)

type lzmaLenDec struct {
	choice, choice2 uint16
	low             [lzmaPosStatesMax][1 << 3]uint16
	mid             [lzmaPosStatesMax][1 << 3]uint16
	high            [1 << 8]uint16
}

func (l *lzmaLenDec) reset() {
	l.choice, l.choice2 = probInit, probInit
	for i := range l.low {
		for k := range l.low[i] {
			l.low[i][k], l.mid[i][k] = probInit, probInit
		}
	}
	for i := range l.high {
		l.high[i] = probInit
	}
}

// Decoder holds the state of one LZMA2 stream being decoded. The zero
// value is ready for Init; a Decoder is reused from stream to stream.
type Decoder struct {
	// range decoder
	in   []byte
	ip   int
	rng  uint32
	code uint32

	// dictionary: a ring of size len(dict)
	dict    []byte
	pos     int   // next write position in dict
	flushed int   // dict[flushed:pos] not yet handed out
	hist    int64 // bytes since the last dictionary reset
	total   int64 // bytes produced
	dictCap int64 // dictionary size of the stream

	// model
	lc, lp, pb uint32
	state      uint32
	rep        [4]uint32
	isMatch    [lzmaStates * lzmaPosStatesMax]uint16
	isRep      [lzmaStates]uint16
	isRepG0    [lzmaStates]uint16
	isRepG1    [lzmaStates]uint16
	isRepG2    [lzmaStates]uint16
	isRep0Long [lzmaStates * lzmaPosStatesMax]uint16
	posSlot    [lzmaLenToPos][1 << 6]uint16
	posSpecial [1 + lzmaFullDistances - lzmaEndPosModel]uint16
	align      [1 << lzmaAlignBits]uint16
	lenDec     lzmaLenDec
	repLenDec  lzmaLenDec
	literal    []uint16

	// out receives decoded data, in order, with its offset in the stream.
	out func(off int64, p []byte) error
}

// Init prepares d for a stream with the given dictionary size, whose output
// will be at most size bytes.
func (d *Decoder) Init(dictSize, size int64, out func(int64, []byte) error) {
	n := min(dictSize, size)
	n = max(n, 4096)
	n = (n + 15) &^ 15
	if int64(cap(d.dict)) < n {
		d.dict = make([]byte, n)
	}
	d.dict = d.dict[:n]
	d.pos, d.flushed, d.hist, d.total = 0, 0, 0, 0
	d.dictCap = dictSize
	d.out = out
}

func (d *Decoder) setProps(b byte) error {
	if b >= 9*5*5 {
		return ErrCorrupt
	}
	d.lc = uint32(b % 9)
	b /= 9
	d.lp = uint32(b % 5)
	d.pb = uint32(b / 5)
	if d.lc+d.lp > 4 { // LZMA2 limit
		return ErrCorrupt
	}
	return nil
}

func (d *Decoder) resetState() {
	d.state = 0
	d.rep = [4]uint32{}
	fill := func(p []uint16) {
		for i := range p {
			p[i] = probInit
		}
	}
	fill(d.isMatch[:])
	fill(d.isRep[:])
	fill(d.isRepG0[:])
	fill(d.isRepG1[:])
	fill(d.isRepG2[:])
	fill(d.isRep0Long[:])
	for i := range d.posSlot {
		fill(d.posSlot[i][:])
	}
	fill(d.posSpecial[:])
	fill(d.align[:])
	d.lenDec.reset()
	d.repLenDec.reset()
	n := 0x300 << (d.lc + d.lp)
	if cap(d.literal) < n {
		d.literal = make([]uint16, n)
	}
	d.literal = d.literal[:n]
	fill(d.literal)
}

// flush hands out the bytes produced since the last flush.
func (d *Decoder) flush() error {
	if d.pos > d.flushed {
		off := d.total - int64(d.pos-d.flushed)
		if err := d.out(off, d.dict[d.flushed:d.pos]); err != nil {
			return err
		}
	}
	if d.pos == len(d.dict) {
		d.pos = 0
	}
	d.flushed = d.pos
	return nil
}

// Range decoder.

func (d *Decoder) rcInit(in []byte) error {
	if len(in) < 5 || in[0] != 0 {
		return ErrCorrupt
	}
	d.in = in
	d.code = uint32(in[1])<<24 | uint32(in[2])<<16 | uint32(in[3])<<8 | uint32(in[4])
	d.ip = 5
	d.rng = 0xffffffff
	if d.code == d.rng {
		return ErrCorrupt
	}
	return nil
}

// The range decoder normalizes before each bit rather than after it (the
// same sequence of operations, and it keeps bit small enough to inline).
// Reading past the chunk panics on the bounds check; decodeLZMA2 recovers
// that into ErrCorrupt.

func (d *Decoder) bit(p *uint16) uint32 {
	if d.rng < 1<<24 {
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.in[d.ip])
		d.ip++
	}
	bound := (d.rng >> 11) * uint32(*p)
	if d.code < bound {
		d.rng = bound
		*p += (1<<11 - *p) >> 5
		return 0
	}
	d.rng -= bound
	d.code -= bound
	*p -= *p >> 5
	return 1
}

func (d *Decoder) bitTree(probs []uint16, bits uint) uint32 {
	m := uint32(1)
	for i := uint(0); i < bits; i++ {
		m = m<<1 | d.bit(&probs[m])
	}
	return m - 1<<bits
}

func (d *Decoder) bitTreeReverse(probs []uint16, bits uint) uint32 {
	m, sym := uint32(1), uint32(0)
	for i := uint(0); i < bits; i++ {
		b := d.bit(&probs[m])
		m = m<<1 | b
		sym |= b << i
	}
	return sym
}

func (d *Decoder) direct(bits uint) uint32 {
	var res uint32
	for ; bits > 0; bits-- {
		if d.rng < 1<<24 {
			d.rng <<= 8
			d.code = d.code<<8 | uint32(d.in[d.ip])
			d.ip++
		}
		d.rng >>= 1
		d.code -= d.rng
		t := 0 - (d.code >> 31)
		d.code += d.rng & t
		res = res<<1 + t + 1
	}
	return res
}

func (d *Decoder) decodeLen(l *lzmaLenDec, posState uint32) uint32 {
	if d.bit(&l.choice) == 0 {
		return d.bitTree(l.low[posState][:], 3)
	}
	if d.bit(&l.choice2) == 0 {
		return 8 + d.bitTree(l.mid[posState][:], 3)
	}
	return 16 + d.bitTree(l.high[:], 8)
}

func (d *Decoder) decodeDist(length uint32) uint32 {
	lenState := min(length, lzmaLenToPos-1)
	slot := d.bitTree(d.posSlot[lenState][:], 6)
	if slot < 4 {
		return slot
	}
	bits := uint(slot>>1) - 1
	dist := (2 | slot&1) << bits
	if slot < lzmaEndPosModel {
		return dist + d.bitTreeReverse(d.posSpecial[dist-slot:], bits)
	}
	dist += d.direct(bits-lzmaAlignBits) << lzmaAlignBits
	return dist + d.bitTreeReverse(d.align[:], lzmaAlignBits)
}

// byteAt returns the byte dist+1 positions back.
func (d *Decoder) byteAt(dist uint32) byte {
	i := d.pos - int(dist) - 1
	if i < 0 {
		i += len(d.dict)
	}
	return d.dict[i]
}

// put appends one byte.
func (d *Decoder) put(b byte) error {
	d.dict[d.pos] = b
	d.pos++
	d.hist++
	d.total++
	if d.pos == len(d.dict) {
		return d.flush()
	}
	return nil
}

// copyMatch appends length bytes from dist+1 back.
func (d *Decoder) copyMatch(dist uint32, length int) error {
	src := d.pos - int(dist) - 1
	if src >= 0 && d.pos+length <= len(d.dict) {
		dst := d.dict[d.pos : d.pos+length]
		if int(dist)+1 >= length {
			copy(dst, d.dict[src:src+length])
		} else if dist == 0 && d.dict[src] == 0 {
			clear(dst)
		} else {
			// Overlapping: the pattern of dist+1 bytes repeats; copy it
			// in doubling pieces.
			for n := 0; n < length; {
				n += copy(dst[n:], d.dict[src:d.pos+n])
			}
		}
		d.pos += length
		d.hist += int64(length)
		d.total += int64(length)
		if d.pos == len(d.dict) {
			return d.flush()
		}
		return nil
	}
	for ; length > 0; length-- {
		if err := d.put(d.byteAt(dist)); err != nil {
			return err
		}
	}
	return nil
}

// decodeChunk decodes one LZMA chunk of packed data in into exactly
// unpacked bytes, stopping early (without error) once the stream has
// produced stop bytes.
func (d *Decoder) decodeChunk(in []byte, unpacked int64, stop int64) error {
	if err := d.rcInit(in); err != nil {
		return err
	}
	end := d.total + unpacked
	pbMask := uint32(1)<<d.pb - 1
	lpMask := uint32(1)<<d.lp - 1
	for d.total < end {
		if d.total >= stop {
			return nil
		}
		posState := uint32(d.total) & pbMask
		state := d.state
		if d.bit(&d.isMatch[state<<4|posState]) == 0 {
			// Literal.
			var prev uint32
			if d.hist > 0 {
				prev = uint32(d.byteAt(0))
			}
			ls := (uint32(d.total)&lpMask)<<d.lc + prev>>(8-d.lc)
			probs := d.literal[0x300*ls : 0x300*ls+0x300]
			sym := uint32(1)
			if state >= 7 {
				if int64(d.rep[0]) >= d.hist {
					return ErrCorrupt
				}
				match := uint32(d.byteAt(d.rep[0]))
				for sym < 0x100 {
					mbit := (match >> 7) & 1
					match <<= 1
					b := d.bit(&probs[(1+mbit)<<8+sym])
					sym = sym<<1 | b
					if mbit != b {
						break
					}
				}
			}
			for sym < 0x100 {
				sym = sym<<1 | d.bit(&probs[sym])
			}
			if err := d.put(byte(sym)); err != nil {
				return err
			}
			switch {
			case state < 4:
				d.state = 0
			case state < 10:
				d.state = state - 3
			default:
				d.state = state - 6
			}
			continue
		}
		var length uint32
		if d.bit(&d.isRep[state]) != 0 {
			if d.hist == 0 {
				return ErrCorrupt
			}
			if d.bit(&d.isRepG0[state]) == 0 {
				if d.bit(&d.isRep0Long[state<<4|posState]) == 0 {
					// Short rep: one byte from rep0.
					if state < 7 {
						d.state = 9
					} else {
						d.state = 11
					}
					if int64(d.rep[0]) >= d.hist {
						return ErrCorrupt
					}
					if err := d.put(d.byteAt(d.rep[0])); err != nil {
						return err
					}
					continue
				}
			} else {
				var dist uint32
				if d.bit(&d.isRepG1[state]) == 0 {
					dist = d.rep[1]
				} else {
					if d.bit(&d.isRepG2[state]) == 0 {
						dist = d.rep[2]
					} else {
						dist = d.rep[3]
						d.rep[3] = d.rep[2]
					}
					d.rep[2] = d.rep[1]
				}
				d.rep[1] = d.rep[0]
				d.rep[0] = dist
			}
			length = d.decodeLen(&d.repLenDec, posState)
			if state < 7 {
				d.state = 8
			} else {
				d.state = 11
			}
		} else {
			d.rep[3], d.rep[2], d.rep[1] = d.rep[2], d.rep[1], d.rep[0]
			length = d.decodeLen(&d.lenDec, posState)
			if state < 7 {
				d.state = 7
			} else {
				d.state = 10
			}
			d.rep[0] = d.decodeDist(length)
			if d.rep[0] == 0xffffffff {
				return ErrCorrupt // end marker: not allowed in LZMA2
			}
		}
		n := int(length) + lzmaMatchMinLen
		if int64(d.rep[0]) >= d.hist || int64(d.rep[0]) >= d.dictCap || int64(n) > end-d.total {
			return ErrCorrupt
		}
		if err := d.copyMatch(d.rep[0], n); err != nil {
			return err
		}
	}
	if d.rng < 1<<24 { // the normalization after the last bit
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.in[d.ip])
		d.ip++
	}
	if d.ip != len(d.in) || d.code != 0 {
		return ErrCorrupt
	}
	return nil
}

// DecodeLZMA2 decodes an LZMA2 stream from in, stopping early once stop
// bytes are out. It returns how many bytes of in it used.
func (d *Decoder) DecodeLZMA2(in []byte, stop int64) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ RuntimeError() }); !ok {
				panic(r)
			}
			err = ErrCorrupt // an index out of range on corrupt input
		}
	}()
	ip := 0
	needDictReset, needProps := true, true
	for {
		if d.total >= stop {
			return ip, d.flush()
		}
		if ip >= len(in) {
			return ip, ErrCorrupt
		}
		ctl := in[ip]
		ip++
		switch {
		case ctl == 0x00:
			return ip, d.flush()
		case ctl == 0x01 || ctl == 0x02:
			if ip+2 > len(in) {
				return ip, ErrCorrupt
			}
			size := int(in[ip])<<8 | int(in[ip+1]) + 1
			ip += 2
			if ctl == 0x01 {
				d.hist = 0
				needDictReset = false
			} else if needDictReset {
				return ip, ErrCorrupt
			}
			if ip+size > len(in) {
				return ip, ErrCorrupt
			}
			for _, b := range in[ip : ip+size] {
				if err := d.put(b); err != nil {
					return ip, err
				}
			}
			ip += size
		case ctl >= 0x80:
			if ip+4 > len(in) {
				return ip, ErrCorrupt
			}
			unpacked := int64(ctl&0x1f)<<16 | int64(in[ip])<<8 | int64(in[ip+1]) + 1
			packed := int(in[ip+2])<<8 | int(in[ip+3]) + 1
			ip += 4
			reset := (ctl >> 5) & 3
			if reset == 3 {
				d.hist = 0
				needDictReset = false
			} else if needDictReset {
				return ip, ErrCorrupt
			}
			if reset >= 2 {
				if ip >= len(in) {
					return ip, ErrCorrupt
				}
				if err := d.setProps(in[ip]); err != nil {
					return ip, err
				}
				ip++
				needProps = false
			} else if needProps {
				return ip, ErrCorrupt
			}
			if reset >= 1 {
				d.resetState()
			}
			if ip+packed > len(in) {
				return ip, ErrCorrupt
			}
			if err := d.decodeChunk(in[ip:ip+packed], unpacked, stop); err != nil {
				return ip, err
			}
			ip += packed
		default:
			return ip, fmt.Errorf("%w (control byte %#x)", ErrCorrupt, ctl)
		}
	}
}

// Total is the number of bytes decoded since Init.
func (d *Decoder) Total() int64 { return d.total }
