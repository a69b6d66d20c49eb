//! Embeds the web console: every file of `console/` becomes an entry of
//! `CONSOLE_ASSETS` (its name, its content type, its bytes through
//! `include_bytes!`), so an asset added there is served without a list to
//! keep. Subdirectories and files of unknown kinds fail the build.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("registry/console is readable")
        .map(|entry| {
            entry
                .expect("a console entry")
                .file_name()
                .into_string()
                .expect("a UTF-8 name")
        })
        .collect();
    names.sort();
    let mut code = String::from(
        "/// Every console asset: name, content type, bytes.\npub const CONSOLE_ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for name in names {
        let path = dir.join(&name);
        assert!(
            path.is_file(),
            "registry/console/{name}: the console is one flat directory of files"
        );
        let content_type = match path.extension().and_then(|extension| extension.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => panic!("registry/console/{name}: only .html, .js, .css and .svg files are served"),
        };
        writeln!(
            code,
            "    ({name:?}, {content_type:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("console_assets.rs");
    std::fs::write(out, code).expect("writing the console's asset list");
}
