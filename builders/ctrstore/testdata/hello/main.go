// Command hello is the program of the images the containerd test preloads:
// with -pause it waits for SIGTERM like a pod's sandbox, otherwise it
// prints a line and exits.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-pause" {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
		return
	}
	fmt.Println("hello from a preloaded image", os.Args[1:])
}
