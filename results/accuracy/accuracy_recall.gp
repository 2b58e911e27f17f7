# accuracy_recall.gp: written by `attnbench report`; run with `gnuplot accuracy_recall.gp` in this folder
set title "Exact softmax mass on the keys scored, by the work done" noenhanced
set xlabel "query-key scores per token" noenhanced
set ylabel "mass recalled (1: all)" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set format y '%g'
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'accuracy_recall.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'accuracy_recall.svg' }
  plot 'accuracy_recall.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "block_sparse, clustered inputs" noenhanced, \
       'accuracy_recall.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "block_sparse, random inputs" noenhanced, \
       'accuracy_recall.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "etc, clustered inputs" noenhanced, \
       'accuracy_recall.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "etc, random inputs" noenhanced, \
       'accuracy_recall.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "lsh, clustered inputs" noenhanced, \
       'accuracy_recall.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "lsh, random inputs" noenhanced
  set output
}
