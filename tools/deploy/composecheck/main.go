// Command composecheck loads a compose file the way `docker compose config` does (compose-go:
// the Compose Specification's JSON schema, interpolation, merging of anchors, and the
// consistency checks: services, volumes, secrets and depends_on that refer to nothing), with no
// Docker engine. It prints the normalized project (like `docker compose config`) with -print,
// else the services it found.
//
//	composecheck [-print] [-env-file FILE] compose.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	printIt := flag.Bool("print", false, "print the normalized project")
	envFile := flag.String("env-file", "", "an env file for interpolation (like docker compose --env-file)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-print] [-env-file FILE] compose.yaml")
		os.Exit(2)
	}
	fns := []cli.ProjectOptionsFn{cli.WithOsEnv, cli.WithConsistency(true), cli.WithResolvedPaths(true)}
	if *envFile != "" {
		fns = append(fns, cli.WithEnvFiles(*envFile), cli.WithDotEnv)
	}
	options, err := cli.NewProjectOptions([]string{flag.Arg(0)}, fns...)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	if *printIt {
		out, err := project.MarshalYAML()
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(out)
		return
	}
	names := project.ServiceNames()
	sort.Strings(names)
	fmt.Printf("%s: project %q, %d services %v\n", flag.Arg(0), project.Name, len(names), names)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
	os.Exit(1)
}
