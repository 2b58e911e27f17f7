# peers_4_memory.gp: written by `attnbench report`; run with `gnuplot peers_4_memory.gp` in this folder
set title "training step: peak memory (RSS), ours and the peers" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "peak RSS" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 2
set format x '2^{%L}'
set format y '%.0b %BB'
set yrange [30758229.333333332:29586192384]
x0 = 1024; y0 = 904060928
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'peers_4_memory.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'peers_4_memory.svg' }
  plot 'peers_4_memory.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full_stream, standard stack heads=4 d_ff=0 ff_chunk=1024 L=2" noenhanced, \
       'peers_4_memory.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "reversible (lsh) L=2" noenhanced, \
       'peers_4_memory.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "ext:hf_bert_train (full_stream) L=2" noenhanced, \
       'peers_4_memory.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "ext:hf_reformer_train (lsh) L=2" noenhanced, \
       y0 * (x / x0) ls 1 title '∝ n', y0 * (x / x0)**2 ls 2 title '∝ n^2'
  set output
}
