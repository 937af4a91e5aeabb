package repo

import (
	"github.com/klauspost/compress/s2"

	"github.com/lifeboat-dr/lifeboat/internal/hugemem"
)

// sealS2Large seals a large payload with the S2 codec, encoding straight
// into the output buffer and encrypting in place, so the payload is the
// only large buffer besides the result. The caller releases the result.
func (c *crypter) sealS2Large(aad string, payload []byte) ([]byte, func()) {
	ns, tag := c.aead.NonceSize(), c.aead.Overhead()
	head := len(objectMagic) + ns // ciphertext starts here
	buf, release := hugemem.Scratch(head + 1 + s2.MaxEncodedLen(len(payload)) + tag)
	copy(buf, objectMagic)
	nonce := buf[len(objectMagic):head]
	if _, err := randRead(nonce); err != nil {
		panic("read random nonce: " + err.Error())
	}
	buf[head] = byte(CodecS2)
	z := s2.Encode(buf[head+1:], payload)
	plain := buf[head : head+1+len(z)]
	sealed := c.aead.Seal(plain[:0], nonce, plain, []byte(aad))
	return buf[:head+len(sealed)], release
}
