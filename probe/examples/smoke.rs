fn main() {
    let mut p = probe::Prober::new();
    let f = probe::Filter::default();
    let t = std::time::Instant::now();
    let c = p.census_with_peers(&f, 5).unwrap();
    println!("{:?} {:?} {:?}", p.backend(), t.elapsed(), c);
    let mut q = probe::Prober::proc_net();
    println!("{:?}", q.census_with_peers(&f, 5).unwrap());
}
