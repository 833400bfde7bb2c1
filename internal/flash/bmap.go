package flash

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// maxBmapFile bounds the size of a bmap file we are willing to parse.
const maxBmapFile = 256 << 20

// Bmap is a parsed bmaptool block map: which byte ranges of an image hold
// data, and optionally a checksum of each range.
type Bmap struct {
	Path       string      // file it was read from
	Version    string      // format version, "1.0" to "2.0"
	ImageSize  int64       // size of the (decompressed) image in bytes
	BlockSize  int64       // block size in bytes
	Blocks     int64       // number of blocks in the image
	Checksum   string      // checksum type of ranges: "sha256", "sha1", "md5", ... or "" when ranges carry none
	Ranges     []BmapRange // mapped ranges, sorted, not overlapping
	MappedSize int64       // sum of the lengths of Ranges
}

// BmapRange is one mapped range of an image, in bytes.
type BmapRange struct {
	Off, Len int64
	First    int64  // first block (as written in the bmap)
	Last     int64  // last block, inclusive
	Sum      []byte // expected checksum of the range bytes; nil if none
}

// End returns the offset just past the range.
func (r BmapRange) End() int64 { return r.Off + r.Len }

type bmapXML struct {
	XMLName           xml.Name `xml:"bmap"`
	Version           string   `xml:"version,attr"`
	ImageSize         *string  `xml:"ImageSize"`
	BlockSize         *string  `xml:"BlockSize"`
	BlocksCount       *string  `xml:"BlocksCount"`
	MappedBlocksCount *string  `xml:"MappedBlocksCount"`
	ChecksumType      *string  `xml:"ChecksumType"`
	BmapFileChecksum  *string  `xml:"BmapFileChecksum"`
	BmapFileSHA1      *string  `xml:"BmapFileSHA1"`
	BlockMap          *struct {
		Ranges []struct {
			Chksum *string `xml:"chksum,attr"`
			SHA1   *string `xml:"sha1,attr"`
			Text   string  `xml:",chardata"`
		} `xml:"Range"`
	} `xml:"BlockMap"`
}

// newHash returns a hash for a bmap checksum type name.
func newHash(name string) (hash.Hash, error) {
	switch strings.ToLower(name) {
	case "sha256":
		return sha256.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "md5":
		return md5.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha384":
		return sha512.New384(), nil
	case "sha224":
		return sha256.New224(), nil
	}
	return nil, fmt.Errorf("unsupported checksum type %q (supported: sha256, sha1, md5, sha512, sha384, sha224)", name)
}

// ReadBmap reads and validates a bmap file as written by `bmaptool create`
// (format versions 1.x and 2.x).
func ReadBmap(path string) (*Bmap, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("bmap %s: not a regular file", path)
	}
	if fi.Size() > maxBmapFile {
		return nil, fmt.Errorf("bmap %s: %d bytes is too large for a bmap", path, fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	b, err := ParseBmap(data)
	if err != nil {
		return nil, fmt.Errorf("bmap %s: %w", path, err)
	}
	b.Path = path
	return b, nil
}

// ParseBmap parses the XML text of a bmap. It checks the bmap's own checksum
// when it has one, and that the ranges fit the image.
func ParseBmap(data []byte) (*Bmap, error) {
	var x bmapXML
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("invalid bmap XML: %v", err)
	}
	b := &Bmap{Version: strings.TrimSpace(x.Version)}
	maj, mnr, ok := strings.Cut(b.Version, ".")
	major, err1 := strconv.Atoi(maj)
	minor, err2 := strconv.Atoi(mnr)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("invalid bmap: bad version attribute %q", x.Version)
	}
	if major < 1 || major > 2 {
		return nil, fmt.Errorf("invalid bmap: format version %s is not supported (1.x and 2.x are)", b.Version)
	}
	num := func(field string, p *string) (int64, error) {
		if p == nil {
			return 0, fmt.Errorf("invalid bmap: missing <%s>", field)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(*p), 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("invalid bmap: <%s> %q is not a non-negative number", field, strings.TrimSpace(*p))
		}
		return v, nil
	}
	var err error
	if b.ImageSize, err = num("ImageSize", x.ImageSize); err != nil {
		return nil, err
	}
	if b.BlockSize, err = num("BlockSize", x.BlockSize); err != nil {
		return nil, err
	}
	if b.Blocks, err = num("BlocksCount", x.BlocksCount); err != nil {
		return nil, err
	}
	if b.BlockSize == 0 || b.BlockSize > 1<<30 {
		return nil, fmt.Errorf("invalid bmap: block size %d", b.BlockSize)
	}
	if want := (b.ImageSize + b.BlockSize - 1) / b.BlockSize; want != b.Blocks {
		return nil, fmt.Errorf("invalid bmap: image size %d bytes does not match %d blocks of %d bytes", b.ImageSize, b.Blocks, b.BlockSize)
	}
	if x.BlockMap == nil {
		return nil, fmt.Errorf("invalid bmap: missing <BlockMap>")
	}

	// Checksum attribute and type by version: 1.0-1.2 have none, 1.3 has
	// sha1, 1.4 and 2.x name the type in <ChecksumType>.
	var fileSum *string
	attr := ""
	switch {
	case major == 2 || (major == 1 && minor >= 4):
		if x.ChecksumType == nil {
			return nil, fmt.Errorf("invalid bmap: version %s needs <ChecksumType>", b.Version)
		}
		b.Checksum = strings.ToLower(strings.TrimSpace(*x.ChecksumType))
		attr, fileSum = "chksum", x.BmapFileChecksum
	case minor == 3:
		b.Checksum, attr, fileSum = "sha1", "sha1", x.BmapFileSHA1
	}
	sumLen := 0
	if b.Checksum != "" {
		h, err := newHash(b.Checksum)
		if err != nil {
			return nil, fmt.Errorf("invalid bmap: %v", err)
		}
		sumLen = h.Size()
	}

	// The bmap's own checksum is computed with its value replaced by '0's.
	if fileSum != nil {
		want := strings.TrimSpace(*fileSum)
		if len(want) != 2*sumLen {
			return nil, fmt.Errorf("invalid bmap: its own %s checksum %q has the wrong length", b.Checksum, want)
		}
		i := bytes.Index(data, []byte(want))
		if i < 0 {
			return nil, fmt.Errorf("invalid bmap: cannot locate its own checksum")
		}
		zeroed := bytes.Clone(data)
		copy(zeroed[i:], bytes.Repeat([]byte("0"), len(want)))
		h, _ := newHash(b.Checksum)
		h.Write(zeroed)
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
			return nil, fmt.Errorf("invalid bmap: the bmap file is corrupt or was edited (its %s is %s, it records %s)", b.Checksum, got, want)
		}
	}

	for i, r := range x.BlockMap.Ranges {
		text := strings.TrimSpace(r.Text)
		a, z, isRange := strings.Cut(text, "-")
		first, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		last := first
		var err2 error
		if isRange {
			last, err2 = strconv.ParseInt(strings.TrimSpace(z), 10, 64)
		}
		if err1 != nil || err2 != nil || first < 0 || last < first {
			return nil, fmt.Errorf("invalid bmap: bad range %d %q", i+1, text)
		}
		if last >= b.Blocks {
			return nil, fmt.Errorf("invalid bmap: range %q goes past the last block %d", text, b.Blocks-1)
		}
		br := BmapRange{First: first, Last: last, Off: first * b.BlockSize}
		br.Len = min((last+1)*b.BlockSize, b.ImageSize) - br.Off
		var sum *string
		switch attr {
		case "chksum":
			sum = r.Chksum
		case "sha1":
			sum = r.SHA1
		}
		if sum != nil {
			s, err := hex.DecodeString(strings.TrimSpace(*sum))
			if err != nil || len(s) != sumLen {
				return nil, fmt.Errorf("invalid bmap: range %q has a bad %s checksum %q", text, b.Checksum, strings.TrimSpace(*sum))
			}
			br.Sum = s
		}
		b.Ranges = append(b.Ranges, br)
	}
	sort.SliceStable(b.Ranges, func(i, j int) bool { return b.Ranges[i].Off < b.Ranges[j].Off })
	for i, r := range b.Ranges {
		if i > 0 && r.Off < b.Ranges[i-1].End() {
			return nil, fmt.Errorf("invalid bmap: ranges %d-%d and %d-%d overlap", b.Ranges[i-1].First, b.Ranges[i-1].Last, r.First, r.Last)
		}
		b.MappedSize += r.Len
	}
	return b, nil
}

// findBmap looks for a bmap next to image the way bmaptool does:
// IMAGE.bmap, then with one extension after another removed
// (foo.wic.zst: foo.wic.zst.bmap, foo.wic.bmap, foo.bmap).
func findBmap(image string) string {
	dir, base := filepath.Split(image)
	for {
		p := filepath.Join(dir, base+".bmap")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
		ext := filepath.Ext(base)
		if ext == "" || ext == base {
			return ""
		}
		base = strings.TrimSuffix(base, ext)
	}
}

// find returns the index of the first range ending after off.
func (b *Bmap) find(off int64) int {
	return sort.Search(len(b.Ranges), func(i int) bool { return b.Ranges[i].End() > off })
}
