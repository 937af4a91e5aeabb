// Command pgtesthello is built by the pgtest tests through MainOptions.Build to check that Bin
// finds built binaries and that they run as the same user as the tests.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("euid=%d\n", os.Geteuid())
}
