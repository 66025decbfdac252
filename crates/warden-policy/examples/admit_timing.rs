//! Times admission of generated consistent bundles (a quick check; `warden bench policy` is the benchmark).
fn main() {
    for n in [10, 100, 1000] {
        let text = warden_policy::generate::consistent_bundle("gen", n, 42);
        let bundle = warden_policy::Bundle::parse(&text, "gen.toml").unwrap();
        let start = std::time::Instant::now();
        let proof = warden_policy::prove(&bundle, &warden_policy::Bound::default());
        let elapsed = start.elapsed();
        match proof {
            Ok(p) => println!("{n}: {elapsed:?} {:?}", p.stats()),
            Err(r) => println!("{n}: {elapsed:?} REJECTED {r}"),
        }
    }
}
