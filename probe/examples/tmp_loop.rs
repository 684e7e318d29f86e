fn main() {
    let port: u16 = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut p = probe::Prober::new();
    let t = std::time::Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs() < 6 {
        n += p.census(&probe::Filter::client(port)).unwrap().total();
    }
    println!("{n}");
}
