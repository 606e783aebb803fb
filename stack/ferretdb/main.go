// Command ferretdb runs FerretDB v1 (MongoDB wire protocol) with its SQLite backend
// on a TCP address, through FerretDB's embeddable package. The released binary's
// `go install` build panics at start (its version file is generated at release
// time), so the local stack builds this small launcher instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when -pprof is set
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "data", "directory for the SQLite databases (created if missing)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	pprofAddr := flag.String("pprof", "", "if set, serve Go's net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	dir, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: data dir %q: %v\n", *dataDir, err)
		os.Exit(1)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/", // SQLite wants a directory URL with the trailing slash
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	if *pprofAddr != "" {
		go func() {
			// DefaultServeMux holds only the /debug/pprof/ handlers registered by the import.
			err := http.ListenAndServe(*pprofAddr, nil) //nolint:gosec // local profiling only, off by default
			logger.Error("pprof listener stopped", "addr", *pprofAddr, "err", err)
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	logger.Info("FerretDB listening", "addr", *listen, "data", dir)
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}
