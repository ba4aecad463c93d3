//! Corpus readers on generated fixtures in each layout, including the error cases.

use std::fs;
use std::io::Write;
use std::path::Path;

use infini_data::{Corpus, Format, Split, open_dataset};

fn write(path: &Path, text: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn pg19_fixture(root: &Path) {
    write(
        &root.join("metadata.csv"),
        "10,\"Emma, a Novel\",1815,http://x/10\n2,Persuasion,1817,http://x/2\n3,Moby Dick,1851,http://x/3\n4,Alice,1865,http://x/4\n",
    );
    write(&root.join("train/10.txt"), "Emma Woodhouse, handsome, clever, and rich.");
    write(&root.join("train/2.txt"), "Sir Walter Elliot, of Kellynch Hall.");
    write(&root.join("validation/3.txt"), "Call me Ishmael.");
    write(&root.join("test/4.txt"), "Alice was beginning to get very tired.");
}

fn titles(corpus: &Corpus, split: Split) -> Vec<String> {
    corpus.documents(split).unwrap().map(|d| d.unwrap().title).collect()
}

fn error(result: infini_data::Result<impl Sized>) -> String {
    let e = result.err().expect("should fail").to_string();
    assert!(!e.contains('\n'), "error is not one line: {e}");
    e
}

fn all_docs(corpus: &Corpus, split: Split) -> infini_data::Result<Vec<infini_data::Document>> {
    corpus.documents(split)?.collect()
}

#[test]
fn pg19_reads_books_by_split_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    pg19_fixture(dir.path());
    let corpus = open_dataset(dir.path(), None, None).unwrap();
    assert_eq!(corpus.format, Format::Pg19);
    assert_eq!(titles(&corpus, Split::Train), ["Persuasion", "Emma, a Novel"]);
    assert_eq!(titles(&corpus, Split::Validation), ["Moby Dick"]);
    let test = all_docs(&corpus, Split::Test).unwrap();
    assert_eq!((test[0].id.as_str(), test[0].text.as_str()), ("4", "Alice was beginning to get very tired."));
}

#[test]
fn pg19_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    pg19_fixture(root);
    fs::remove_dir_all(root.join("validation")).unwrap();
    assert!(error(Corpus::open(root, Format::Pg19, None)).contains("no validation/ folder"));

    pg19_fixture(root);
    write(&root.join("metadata.csv"), "10,Emma,1815,http://x\n2,Persuasion,1817\n");
    let e = error(all_docs(&Corpus::open(root, Format::Pg19, None).unwrap(), Split::Train));
    assert!(e.contains("metadata.csv:2") && e.contains("expected 4 fields"), "{e}");

    pg19_fixture(root);
    write(&root.join("metadata.csv"), fs::read_to_string(root.join("metadata.csv")).unwrap() + "99,Lost,1900,u\n");
    let e = error(all_docs(&Corpus::open(root, Format::Pg19, None).unwrap(), Split::Train));
    assert!(e.contains("listed but absent") && e.contains("99.txt"), "{e}");

    pg19_fixture(root);
    write(&root.join("train/77.txt"), "unlisted");
    let e = error(all_docs(&Corpus::open(root, Format::Pg19, None).unwrap(), Split::Train));
    assert!(e.contains("77.txt") && e.contains("not listed"), "{e}");
    fs::remove_file(root.join("train/77.txt")).unwrap();

    write(&root.join("train/2.txt"), b"caf\xe9 latin-1".as_slice());
    let e = error(all_docs(&Corpus::open(root, Format::Pg19, None).unwrap(), Split::Train));
    assert!(e.contains("2.txt") && e.contains("UTF-8"), "{e}");

    assert!(error(Corpus::open(root.join("nope"), Format::Pg19, None)).contains("does not exist"));
}

fn gz(path: &Path, lines: &[&str]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), flate2::Compression::fast());
    for l in lines {
        writeln!(enc, "{l}").unwrap();
    }
    enc.finish().unwrap();
}

fn proof_pile_fixture(root: &Path) {
    gz(
        &root.join("train/proofpile_train_0.jsonl.gz"),
        &[
            r#"{"text": "Let $x^2 = 1$.", "meta": {"config": "arxiv", "file": "a"}}"#,
            r#"{"text": "def f(): pass", "meta": {"config": "github"}}"#,
            "",
            r#"{"text": "\\begin{theorem} $a+b$ \\end{theorem}", "meta": {"config": "arxiv"}}"#,
        ],
    );
    gz(&root.join("dev/proofpile_dev.jsonl.gz"), &[r#"{"text": "dev $y$", "meta": {"config": "arxiv"}}"#]);
    gz(&root.join("test/proofpile_test.jsonl.gz"), &[r#"{"text": "test $z$", "meta": {"config": "arxiv"}}"#]);
}

#[test]
fn proof_pile_reads_rows_and_filters_by_config() {
    let dir = tempfile::tempdir().unwrap();
    proof_pile_fixture(dir.path());
    let all = open_dataset(dir.path(), None, None).unwrap();
    assert_eq!(all.format, Format::ProofPile);
    assert_eq!(all_docs(&all, Split::Train).unwrap().len(), 3);
    let arxiv = open_dataset(dir.path(), None, Some("arxiv".into())).unwrap();
    let docs = all_docs(&arxiv, Split::Train).unwrap();
    assert_eq!(docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), ["Let $x^2 = 1$.", "\\begin{theorem} $a+b$ \\end{theorem}"]);
    assert_eq!(docs[1].id, "proofpile_train_0.jsonl.gz:4");
    assert_eq!(all_docs(&arxiv, Split::Validation).unwrap()[0].text, "dev $y$");
}

#[test]
fn proof_pile_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proof_pile_fixture(root);
    gz(&root.join("train/proofpile_train_1.jsonl.gz"), &[r#"{"text": "ok", "meta": {}}"#, r#"{"txt": "no text field"}"#]);
    let e = error(all_docs(&Corpus::open(root, Format::ProofPile, None).unwrap(), Split::Train));
    assert!(e.contains("proofpile_train_1.jsonl.gz:2") && e.contains("invalid JSON"), "{e}");

    fs::remove_file(root.join("train/proofpile_train_1.jsonl.gz")).unwrap();
    write(&root.join("train/proofpile_train_2.jsonl.gz"), b"this is not gzip at all".as_slice());
    let e = error(all_docs(&Corpus::open(root, Format::ProofPile, None).unwrap(), Split::Train));
    assert!(e.contains("proofpile_train_2.jsonl.gz") && e.contains("gzip"), "{e}");

    fs::remove_dir_all(root.join("dev")).unwrap();
    assert!(error(Corpus::open(root, Format::ProofPile, None)).contains("no dev/ folder"));
}

#[test]
fn text_folder_split_is_deterministic_and_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        write(&dir.path().join(format!("sub/book{i:02}.txt")), format!("text of book {i}"));
    }
    write(&dir.path().join("notes.md"), "ignored");
    let corpus = open_dataset(dir.path(), None, None).unwrap();
    assert_eq!(corpus.format, Format::Text);
    let sizes: Vec<usize> = Split::ALL.iter().map(|&s| all_docs(&corpus, s).unwrap().len()).collect();
    assert_eq!(sizes, [36, 2, 2]);
    let again = open_dataset(dir.path(), Some("text"), None).unwrap();
    assert_eq!(titles(&corpus, Split::Test), titles(&again, Split::Test));
    let train = titles(&corpus, Split::Train);
    assert!(titles(&corpus, Split::Test).iter().all(|t| !train.contains(t)));
}

#[test]
fn dataset_cards_resolve_their_path_and_explain_how_to_obtain() {
    let dir = tempfile::tempdir().unwrap();
    pg19_fixture(&dir.path().join("data/books"));
    let card = dir.path().join("datasets/books.toml");
    let body = |path: &str| {
        format!(
            "name = \"books\"\ndescription = \"d\"\nformat = \"pg19\"\npath = \"{path}\"\nlicense = \"PD\"\nsource = \"s\"\nobtain = \"run fetch.sh\"\n"
        )
    };
    write(&card, body("../data/books"));
    let corpus = open_dataset(&card, None, None).unwrap();
    assert_eq!(titles(&corpus, Split::Validation), ["Moby Dick"]);
    write(&card, body("../data/missing"));
    assert!(error(open_dataset(&card, None, None)).contains("run fetch.sh"));
    write(&card, body("x") + "colour = \"red\"\n");
    let e = error(open_dataset(&card, None, None));
    assert!(e.contains("books.toml:8") && e.contains("colour"), "{e}");
}

#[test]
fn every_shipped_dataset_card_parses_and_synthetic_ones_generate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    let mut synthetic = 0;
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let card = infini_data::card::DatasetCard::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if card.format == "synthetic" {
            // Generated on open: a shipped synthetic card must make documents with no data at hand,
            // or, where it hides its task in a fetched corpus that is absent, say how to fetch it.
            let filler = card.synthetic.as_ref().and_then(|s| s.filler.clone());
            if filler.is_some_and(|f| !root.join(f).is_dir()) {
                let e = error(open_dataset(&path, None, None));
                assert!(e.contains("to get it") && e.contains(&card.obtain), "{}: {e}", path.display());
                continue;
            }
            let corpus = open_dataset(&path, None, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!all_docs(&corpus, Split::Validation).unwrap().is_empty(), "{}", path.display());
            synthetic += 1;
        }
    }
    assert!(synthetic >= 3, "passkey, passkey-short and recall cards");
}
