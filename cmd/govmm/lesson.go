package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/govmm/govmm/examples/lessons"
)

const lessonUsage = `Usage:
  govmm lesson                          list the lessons
  govmm lesson NAME [boot options]      assemble lesson NAME and boot it
  govmm lesson FILE.S [boot options]    assemble a source file (a lesson you
                                        changed) and boot it
  govmm lesson --build DIR NAME...      only assemble, writing DIR/NAME.bin

The lessons are tiny bare-metal guests in examples/lessons, each showing one
idea (real mode and a UART, long mode, a timer interrupt, a virtio device).
govmm carries their sources and assembles them with GNU as and ld (binutils),
then boots the image as 'govmm boot --raw' would. Boot options such as
--stats, --trace FILE or --log-level info are passed on; --kernel is not.
`

// cmdLesson lists, assembles or runs the lesson guests.
func cmdLesson(args []string, stdin *os.File, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		listLessons(stdout)
		return exitOK, nil
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, lessonUsage)
		return exitOK, nil
	case "--list", "list":
		listLessons(stdout)
		return exitOK, nil
	case "--build":
		if len(args) < 3 {
			return exitUsage, usageError{errors.New("lesson --build needs a directory and at least one lesson name")}
		}
		for _, name := range args[2:] {
			if _, ok := lessons.Lookup(name); !ok {
				return exitUsage, usageError{unknownLessonError(name)}
			}
			path, err := lessons.Build(name, args[1])
			if err != nil {
				return exitError, err
			}
			fmt.Fprintln(stdout, path)
		}
		return exitOK, nil
	}
	name, bootArgs := args[0], args[1:]
	if strings.HasPrefix(name, "-") {
		return exitUsage, usageError{fmt.Errorf("lesson: expected a lesson name before %q (try 'govmm lesson --help')", name)}
	}
	// A name ending in .S or .s is a source file: the exercises are
	// done by editing a copy of a lesson and running it this way.
	isFile := strings.HasSuffix(name, ".S") || strings.HasSuffix(name, ".s")
	if _, ok := lessons.Lookup(name); !ok && !isFile {
		return exitUsage, usageError{unknownLessonError(name)}
	}
	for _, a := range bootArgs {
		if a == "--kernel" || strings.HasPrefix(a, "--kernel=") {
			return exitUsage, usageError{errors.New("lesson: --kernel cannot be used; the lesson is the kernel")}
		}
	}
	dir, err := os.MkdirTemp("", "govmm-lesson-")
	if err != nil {
		return exitError, err
	}
	defer os.RemoveAll(dir)
	build := lessons.Build
	if isFile {
		build = lessons.BuildFile
	}
	path, err := build(name, dir)
	if err != nil {
		return exitError, err
	}
	return cmdBoot(append([]string{"--raw", "--kernel", path}, bootArgs...), stdin, stdout, stderr)
}

func listLessons(w io.Writer) {
	fmt.Fprintln(w, "Lessons, in order (run one with 'govmm lesson NAME'; see examples/lessons/README.md):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, l := range lessons.All {
		fmt.Fprintf(tw, "  %d.\t%s\t%s\n", i+1, l.Name, l.Summary)
	}
	tw.Flush()
}

func unknownLessonError(name string) error {
	return fmt.Errorf("no lesson called %q (the lessons are %s; or give a FILE.S)", name, strings.Join(lessons.Names(), ", "))
}
