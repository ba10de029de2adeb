"""AiiDA WorkChains of the lifelong-learning campaign and the pure-NumPy decisions they take."""
