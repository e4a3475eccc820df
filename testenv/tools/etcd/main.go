// Glue: the etcd server binary from the go.etcd.io/etcd/server/v3 module (which has no main package).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
